"""A delegated-operation worker for the tests: ``python _worker.py [seconds_per_save] [--one]``.

Runs queued delegated operations in this process, as ``fiftyone delegated launch`` does: each
operation is claimed atomically (queued -> running), so several workers can run side by side.

* ``seconds_per_save``: a delay before each sample save, so a test can kill the run half-way;
  a test device only, applied from outside the plugin.
* ``--one``: run exactly one operation and exit: try the queued operations in order until one
  is claimed (another worker may claim any of them first). With N operations queued before N
  such workers start, each worker runs exactly one, whatever their relative speed; a plain
  worker that starts first could claim them all.
"""

import sys
import time

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    one = "--one" in sys.argv[1:]
    delay = float(args[0]) if args else 0.0
    if delay > 0:
        import fiftyone.core.sample as fcs

        for cls in (fcs.Sample, fcs.SampleView):
            original = cls.save

            def slow(self, *args, _original=original, **kwargs):
                time.sleep(delay)
                return _original(self, *args, **kwargs)

            cls.save = slow
    from fiftyone.operators.delegated import DelegatedOperationService

    service = DelegatedOperationService()
    if one:
        from fiftyone.operators.executor import ExecutionRunState

        results = []
        for op in service.list_operations(run_state=ExecutionRunState.QUEUED):
            result = service.execute_operation(op)  # None: another worker claimed it first
            if result is not None:
                results.append(result)
                print("OP", op.id, flush=True)
                break
    else:
        results = service.execute_queued_operations()
    print("RAN", sum(r is not None for r in results), flush=True)

"""A delegated-operation worker for the tests: ``python _worker.py [seconds_per_save]``.

Runs every queued delegated operation in this process, as ``fiftyone delegated launch`` does
(each operation is claimed atomically, so several workers can run side by side). The optional
delay before each sample save slows the run down so a test can kill it half-way; it is a test
device only, applied from outside the plugin.
"""

import sys
import time

if __name__ == "__main__":
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    if delay > 0:
        import fiftyone.core.sample as fcs

        for cls in (fcs.Sample, fcs.SampleView):
            original = cls.save

            def slow(self, *args, _original=original, **kwargs):
                time.sleep(delay)
                return _original(self, *args, **kwargs)

            cls.save = slow
    from fiftyone.operators.delegated import DelegatedOperationService

    results = DelegatedOperationService().execute_queued_operations()
    print("RAN", sum(r is not None for r in results), flush=True)

"""``python -m lightning_module.cli fit --config lightning_module/configs/<x>.yaml``.

A :class:`~lightning.pytorch.cli.LightningCLI` over :class:`SAM2FineTuner` and
:class:`SAM2DataModule`: every argument of both (``model.freeze``, ``model.train_only``,
``data.scale``, ...) and of the Trainer (strategy ddp / fsdp, devices, num_nodes, precision
bf16-mixed, gradient_clip_val, callbacks, ...) is settable from YAML or the command line.

Extra options of ``fit``:

* ``--export PATH`` writes the official ``{"model": state_dict}`` checkpoint after ``fit``.
* ``--validate_before_fit true`` (default) scores the starting model on the validation data
  first, so the log (and the console) starts with the baseline.

The example configs ship with the package: ``--print-example-config`` lists them and
``--print-example-config NAME`` prints one (``... --print-example-config finetune_nuclei >
mine.yaml`` copies it), wherever the package is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from lightning.pytorch.cli import LightningCLI

from .datamodules import SAM2DataModule
from .module import SAM2FineTuner

__all__ = ["SAM2CLI", "example_configs", "main"]


def example_configs() -> dict:
    """The shipped example configs: name (file stem) -> path of the YAML file."""
    folder = Path(__file__).resolve().parent / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _print_example_config(argv: List[str]) -> int:
    """``--print-example-config [NAME]``: list the shipped configs, or print one."""
    i = argv.index("--print-example-config")
    name = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
    configs = example_configs()
    if name is None:
        print("example configs (print one with --print-example-config NAME):")
        for stem, path in configs.items():
            print(f"  {stem:24s} {path}")
        return 0
    stem = Path(name).stem
    if stem not in configs:
        print(f"error: no example config {name!r}; expected one of {sorted(configs)}", file=sys.stderr)
        return 2
    sys.stdout.write(configs[stem].read_text())
    return 0


class SAM2CLI(LightningCLI):
    """LightningCLI with ``--export`` and ``--validate_before_fit`` on ``fit``."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[override]
        parser.add_argument("--export", type=Optional[str], default=None,
                            help="write an official {'model': state_dict} file here after fit")
        parser.add_argument("--validate_before_fit", type=bool, default=True,
                            help="validate the starting model before training (the baseline)")

    def _sub(self, key: str, default=None):
        return self.config.get(self.subcommand, {}).get(key, default) if self.subcommand else default

    def _check_sizes(self) -> None:
        # a data.image_size that the model cannot take fails here, before anything runs
        if isinstance(self.datamodule, SAM2DataModule):
            self.datamodule.check_model(self.model)

    def before_validate(self) -> None:
        self._check_sizes()

    def before_fit(self) -> None:
        self._check_sizes()
        dm = self.datamodule
        if self._sub("validate_before_fit", True) and getattr(dm, "val_specs", None):
            res = self.trainer.validate(self.model, datamodule=dm, verbose=False)
            if self.trainer.is_global_zero and res:
                scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(res[0].items()))
                print(f"baseline (before training): {scores}", flush=True)

    def after_fit(self) -> None:
        path = self._sub("export")
        if path and self.trainer.is_global_zero:
            self.model.export(path)
            print(f"exported {path}")


def main(args: Optional[List[str]] = None) -> None:
    """Run the CLI on ``args`` (from Python) or, when None, on the command line."""
    argv = list(sys.argv[1:] if args is None else args)
    if "--print-example-config" in argv:
        raise SystemExit(_print_example_config(argv))
    # args=None lets LightningCLI read sys.argv itself; passing sys.argv[1:] explicitly made
    # it warn "LightningCLI's args parameter ... not recommended" on every run
    SAM2CLI(SAM2FineTuner, SAM2DataModule, save_config_kwargs={"overwrite": True}, args=args)


if __name__ == "__main__":
    main()

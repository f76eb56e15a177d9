"""``python -m lightning_module.cli fit --config lightning_module/configs/<x>.yaml``.

A plain :class:`~lightning.pytorch.cli.LightningCLI` over :class:`SAM2FineTuner` and
:class:`SAM2DataModule`: every argument of both (and of the Trainer: strategy ddp / fsdp,
devices, num_nodes, precision bf16-mixed, gradient_clip_val, ...) is settable from YAML or
the command line. ``--export PATH`` writes the official checkpoint after ``fit``.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from lightning.pytorch.cli import LightningCLI

from .datamodules import SAM2DataModule
from .module import SAM2FineTuner

__all__ = ["SAM2CLI", "main"]


class SAM2CLI(LightningCLI):
    """LightningCLI with an ``--export`` option on ``fit``."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[override]
        parser.add_argument("--export", type=Optional[str], default=None,
                            help="write an official {'model': state_dict} file here after fit")

    def after_fit(self) -> None:
        path = self.config.get(self.subcommand, {}).get("export") if self.subcommand else None
        if path and self.trainer.is_global_zero:
            self.model.export(path)
            print(f"exported {path}")


def main(args: Optional[List[str]] = None) -> None:
    SAM2CLI(SAM2FineTuner, SAM2DataModule, save_config_kwargs={"overwrite": True},
            args=args if args is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

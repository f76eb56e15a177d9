"""Entry point: ``python -m benchmarks <command> ...``."""

import sys

from .cli import main

sys.exit(main())

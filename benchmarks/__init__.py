"""The zero-shot benchmark suite of sam2-plugins: ``python -m benchmarks --help``.

Protocols live in :mod:`sam2_plugins.evaluation` (the core); this package wires them to
datasets, models and report files.
"""

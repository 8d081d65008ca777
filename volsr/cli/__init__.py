"""The ``volsr`` command: one module per command group, all thin shells over :mod:`volsr.api`.

:mod:`volsr.cli.app` builds the parser and runs ``infer`` and ``info``; ``train``/``distil``/
``models`` (:mod:`volsr.cli.train`), ``eval``/``score`` (:mod:`volsr.cli.evaluate`),
``upscale`` (:mod:`volsr.cli.upscale`) and ``score2d`` (:mod:`volsr.cli.score2d`) add their
subparsers to it.
"""

from .app import build_parser, check_output, default_output, main, show_log
from .progress import ProgressReporter

__all__ = ["ProgressReporter", "build_parser", "check_output", "default_output", "main", "show_log"]

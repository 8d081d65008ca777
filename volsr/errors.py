"""Error types that reach users.

Every problem a user can cause (bad file, bad axes, bad factor, ...) is raised as a
:class:`VolsrError` with a message that names the problem *and* the fix. The CLI turns
these into a one-line message and exit code 2 instead of a traceback.
"""


class VolsrError(ValueError):
    """A user-facing error: bad input, bad option, missing resource."""


class InputError(VolsrError):
    """The input stack, axes or metadata cannot be used as given."""


class OutputError(VolsrError):
    """The output cannot be written where asked (missing folder, file exists, ...)."""


class ModelFileError(VolsrError):
    """A model file is missing, truncated, not a volsr model, or from a newer version."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked to stop (napari Cancel, Ctrl-C)."""

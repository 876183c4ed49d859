"""Exceptions raised for user mistakes.

Every error a user can cause (missing data, unknown architecture, a weight
file that does not fit, a corrupt file) is raised as a subclass of
:class:`LasresError` with a one-line message; the scripts print that line and
exit with status 2 instead of showing a traceback.
"""


class LasresError(Exception):
    """Base class of the errors caused by bad input rather than by a bug."""


class DataError(LasresError):
    """A dataset is missing or malformed."""


class WeightFileError(LasresError):
    """A weight or checkpoint file is missing, corrupt, foreign or unsafe."""


class ShapeMismatchError(LasresError, ValueError):
    """A list of parameter values does not fit a network."""


class ArchitectureError(LasresError, ValueError):
    """An unknown architecture name or an impossible depth/width."""


class ExportError(LasresError):
    """A network (a layer, an input shape) that cannot be exported (to ONNX)."""

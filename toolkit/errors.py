"""Typed errors. The library raises these; `cli.py` turns them into one line and an exit code."""


class ToolkitError(Exception):
    """Base class: a problem the user can fix. The message says what, where and how."""

    exit_code = 2


class DataError(ToolkitError):
    """A dataset file is missing, malformed or unusable."""


class ModelError(ToolkitError):
    """A model, checkpoint or preset cannot be loaded or does not fit the task."""


class ArtifactError(ToolkitError):
    """An exported artifact is missing files, corrupt or inconsistent."""


class ExportError(ToolkitError):
    """An export step failed or produced a variant that does not match PyTorch."""

    exit_code = 1


class ProviderError(ToolkitError):
    """A requested onnxruntime execution provider is not available or did not attach."""


class ValidationFailed(ToolkitError):
    """One or more parity gates failed; `failures` holds every failing check."""

    exit_code = 1

    def __init__(self, message: str, failures=()):
        super().__init__(message)
        self.failures = list(failures)


def first_line(error: Exception) -> str:
    """Library errors can span pages (optimum, onnxruntime); the first line says what went wrong."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

"""The workers package's root exception and its kinds."""


class WorkerError(Exception):
    """Root of every error raised by ``workers``; its message is safe to store as ``error_msg``."""


class InputError(WorkerError):
    """The task's inputs cannot be read (missing dataset version, manifest, folder)."""


class StopRequested(WorkerError):
    """The version was asked to stop; raised between batches."""

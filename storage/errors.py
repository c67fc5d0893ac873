"""The storage package's root exception and its kinds; foreign errors are wrapped once, with ``from``."""


class StorageError(Exception):
    """Root of every error raised by ``storage``."""


class InvalidKeyError(StorageError):
    """A URI or object key that must never reach a backend (``..``, absolute, NUL, control chars)."""


class ObjectNotFoundError(StorageError):
    """The object or bucket does not exist."""


class TransientStorageError(StorageError):
    """A failure worth retrying with backoff (connection reset, throttling, 5xx)."""


class ManifestError(StorageError):
    """A manifest line that cannot be parsed."""


class NotFoundError(StorageError):
    """A metadata record (dataset, version, task) that does not exist."""


class ConflictError(StorageError):
    """A metadata write that would break a uniqueness rule (name taken, version exists)."""

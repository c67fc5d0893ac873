"""The operators package's root exception and its kinds."""


class OperatorError(Exception):
    """Root of every error raised by ``operators``."""


class UnknownOperatorError(OperatorError):
    """No operator is registered under that ModelArts name."""


class InvalidParamsError(OperatorError):
    """Operator parameters that fail validation; ``str()`` is safe to show to a client."""


class DecodeError(OperatorError):
    """A sample that cannot be decoded safely (bad bytes, format not allowed, too large, bomb)."""

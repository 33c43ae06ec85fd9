"""Exceptions raised by hadamnp.

Every user-facing failure raises one of these, with a message naming the offending
argument, size or file. They subclass the matching built-in (``ValueError``,
``KeyError`` ...) so generic handlers keep working.
"""


class HadamnpError(Exception):
    """Base class of all hadamnp errors."""


class ShapeError(HadamnpError, ValueError):
    """An array has the wrong number of dimensions or the wrong size along an axis."""


class SizeError(HadamnpError, ValueError):
    """A size violates a structural rule (e.g. not a power of two, block does not divide n)."""


class NonFiniteError(HadamnpError, ValueError):
    """An input array holds NaN or Inf."""


class ConfigError(HadamnpError, ValueError):
    """An unknown option, an unknown configuration key or an invalid option value."""


class CheckpointError(HadamnpError):
    """A checkpoint or exported file is missing, truncated, corrupt or incompatible."""


class DataFormatError(HadamnpError, ValueError):
    """A data file (IDX, npz) is malformed: wrong magic number, size or keys."""


class IntegerRangeError(HadamnpError, ValueError):
    """An integer value or a worst-case intermediate bound leaves its allowed range."""

"""The exception hierarchy of pravega-wire: everything it raises on purpose derives from
:class:`PravegaWireError`."""

from __future__ import annotations

import builtins

__all__ = [
    "PravegaWireError", "InvalidMessageError", "ConnectionFailedError", "ConnectionClosedError",
    "IncompatibleVersionError", "WrongHostError", "SegmentSealedError", "NoSuchSegmentError",
    "SegmentTruncatedError", "AuthenticationError", "TokenExpiredError", "RetriesExhaustedError",
    "TimeoutError", "ServerError", "EncoderStateError", "ConditionalAppendError",
    "BadOffsetError", "WrongSegmentTypeError", "AdminCommandError",
]


class PravegaWireError(Exception):
    """Base class of every error pravega-wire raises."""


class InvalidMessageError(PravegaWireError, ValueError):
    """Bytes that are not a valid WireCommand (from either codec twin), a command that cannot be
    encoded (a string over 65 535 bytes, a frame over 16 777 215 bytes, a missing value), or a
    protocol rule broken by a peer (an append before SetupAppend, ...).

    ``offset``, when known, is the position in the input at which the problem was found.
    """

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message if offset is None else f"{message} (at offset {offset})")
        self.offset = offset


class ConnectionFailedError(PravegaWireError, ConnectionError):
    """A connection could not be opened, or failed while in use (reset, EOF, bad data, timeout)."""


class ConnectionClosedError(ConnectionFailedError):
    """The connection, flow or client was closed deliberately (by this side) before the
    operation completed."""


class IncompatibleVersionError(ConnectionFailedError):
    """The peer's Hello announced a wire-version range that does not overlap ours."""


class WrongHostError(PravegaWireError):
    """The segment store does not own the segment (WrongHost)."""


class SegmentSealedError(PravegaWireError):
    """The segment is sealed. ``unacknowledged``: when a writer fails with it, the payloads of
    every event it had not had acknowledged, in order, for the caller to write elsewhere."""

    def __init__(self, message: str = "segment is sealed", unacknowledged=()):
        super().__init__(message)
        self.unacknowledged = list(unacknowledged)


class NoSuchSegmentError(PravegaWireError):
    """The segment does not exist. ``unacknowledged``: as for :class:`SegmentSealedError`."""

    def __init__(self, message: str = "no such segment", unacknowledged=()):
        super().__init__(message)
        self.unacknowledged = list(unacknowledged)


class SegmentTruncatedError(PravegaWireError):
    """The requested offset lies before the segment's start (or the segment is gone)."""

    def __init__(self, message: str = "segment truncated", start_offset: int = -1):
        super().__init__(message)
        self.start_offset = start_offset


class AuthenticationError(PravegaWireError):
    """The delegation token was rejected."""


class TokenExpiredError(AuthenticationError):
    """The delegation token expired; a fresh one may succeed."""


class RetriesExhaustedError(PravegaWireError):
    """An operation kept failing until its retry budget ran out; ``__cause__`` is the last
    failure."""


class TimeoutError(PravegaWireError, builtins.TimeoutError):  # noqa: A001 (shadows on purpose)
    """An operation did not complete within its bound."""


class ServerError(PravegaWireError):
    """The segment store refused a request: an ``ErrorMessage`` reply (``error_code`` 0 is
    Java's IllegalArgumentException, -1 any other error) or ``OperationUnsupported``. Not
    retried."""

    def __init__(self, message: str, *, segment: str = "", error_code: int = -1):
        super().__init__(message)
        self.segment = segment
        self.error_code = error_code

    @property
    def is_illegal_argument(self) -> bool:
        return self.error_code == 0


class EncoderStateError(PravegaWireError, RuntimeError):
    """A command the encoder may not write in its current state (Java: IllegalStateException):
    a Hello while an append block is open or appends are queued."""


class ConditionalAppendError(PravegaWireError, ValueError):
    """A conditional :class:`Append` (``expected_length`` set) was given to the block path
    (Java: IllegalArgumentException). Send a ``ConditionalAppend`` command instead."""


class BadOffsetError(PravegaWireError, ValueError):
    """An offset beyond the segment's length: the store answered a TruncateSegment past the end
    with ``SegmentIsTruncated`` (Java: ``BadOffsetException``) and left the segment unchanged.
    ``start_offset`` is the segment's start, ``offset`` the offset asked for."""

    def __init__(self, message: str, *, start_offset: int = -1, offset: int = -1):
        super().__init__(message)
        self.start_offset = start_offset
        self.offset = offset


class WrongSegmentTypeError(PravegaWireError):
    """A table command for a segment that is not a table segment (a stream segment): Pravega's
    store closes the whole connection without a reply, so such a command is tried on a
    connection of its own, and that close becomes this error."""


class AdminCommandError(PravegaWireError, ValueError):
    """A command only a segment store's admin port serves (FlushToStorage, ListStorageChunks):
    on the data port the store closes the whole connection, so it is refused before it is
    sent."""

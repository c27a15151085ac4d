"""The sans-I/O append path: picks its implementation once, at import.

* :class:`CommandEncoder`: the client's per-connection encoder (blocks, PartialEvent, Padding,
  queued writers, the 20 ms batch timeout, adaptive block sizes), byte-compatible with Java's.
* :class:`AppendDecoder`: the segment store's side, turning decoded commands into
  :class:`Append` records and rejecting what Java rejects.
* :class:`AppendBatchSizeTracker` and :class:`FlowBatchSizeTrackers`: adaptive block sizing.

As in :mod:`pravega_wire.codec`, the compiled twin (``pravega_wire._appends``) is used when it
is installed, unless ``PRAVEGA_WIRE_NO_EXTENSIONS`` is set to a non-empty value other than
``0``; then, or when the extension is missing, the pure-Python twin
(``pravega_wire._appends_py``) is. ``IMPLEMENTATION`` says which one loaded. Both expose the
same names and behave the same; :class:`Append`, the errors and the constants are shared.
"""

from __future__ import annotations

from .codec import pure_requested

__all__ = [
    "IMPLEMENTATION", "impl", "Append", "AppendDecoder", "CommandEncoder",
    "AppendBatchSizeTracker", "FlowBatchSizeTrackers", "EncoderStateError",
    "ConditionalAppendError", "BatchSizeConstants", "read_batch_size_env", "MAX_QUEUED_EVENTS",
    "MAX_QUEUED_SIZE", "MAX_SESSIONS", "MAX_BATCH_TIME_MILLIS", "MAX_BATCH_SIZE",
    "BASE_TIME_NANOS", "BASE_SIZE", "OUTSTANDING_FRACTION", "MAX_APPEND_SIZE", "MAX_BLOCK_SIZE",
    "DEFAULT_MAX_FLOWS", "DEFAULT_FLOW_IDLE_EXPIRY_NS",
]

if pure_requested():
    from . import _appends_py as impl
else:
    try:
        from . import _appends as impl  # type: ignore[no-redef]
    except ImportError:  # no compiler at install time: the pure twin stands in
        from . import _appends_py as impl  # type: ignore[no-redef]

IMPLEMENTATION: str = impl.IMPLEMENTATION
Append = impl.Append
AppendDecoder = impl.AppendDecoder
CommandEncoder = impl.CommandEncoder
AppendBatchSizeTracker = impl.AppendBatchSizeTracker
FlowBatchSizeTrackers = impl.FlowBatchSizeTrackers
EncoderStateError = impl.EncoderStateError
ConditionalAppendError = impl.ConditionalAppendError
BatchSizeConstants = impl.BatchSizeConstants
read_batch_size_env = impl.read_batch_size_env
MAX_QUEUED_EVENTS = impl.MAX_QUEUED_EVENTS
MAX_QUEUED_SIZE = impl.MAX_QUEUED_SIZE
MAX_SESSIONS = impl.MAX_SESSIONS
MAX_BATCH_TIME_MILLIS = impl.MAX_BATCH_TIME_MILLIS
MAX_BATCH_SIZE = impl.MAX_BATCH_SIZE
BASE_TIME_NANOS = impl.BASE_TIME_NANOS
BASE_SIZE = impl.BASE_SIZE
OUTSTANDING_FRACTION = impl.OUTSTANDING_FRACTION
MAX_APPEND_SIZE = impl.MAX_APPEND_SIZE
MAX_BLOCK_SIZE = impl.MAX_BLOCK_SIZE
DEFAULT_MAX_FLOWS = impl.DEFAULT_MAX_FLOWS
DEFAULT_FLOW_IDLE_EXPIRY_NS = impl.DEFAULT_FLOW_IDLE_EXPIRY_NS

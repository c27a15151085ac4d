"""The sans-I/O append path, pure-Python twin (the reference, and the debugging mode).

Three state machines, no sockets, clocks or tasks inside (a clock is injected where one is
needed):

* :class:`AppendDecoder` (server side, docs/protocol.md §4.6): fed the commands a
  ``FrameDecoder(server=True)`` decodes, in order, it turns AppendBlock/AppendBlockEnd pairs,
  lone AppendBlockEnds, ConditionalAppend and ConditionalBlockEnd into :class:`Append` records,
  passes every other command through, and raises :class:`~pravega_wire.InvalidMessageError`
  wherever Java's ``AppendDecoder`` makes the segment store close the connection.
* :class:`CommandEncoder` (client side, §4.2–4.5): one per connection. It frames commands and
  packs appends into blocks exactly as Java's ``CommandEncoder`` does, byte for byte, and holds
  back an open block's bytes until the block completes. ``data_to_send()`` drains what Java
  would have flushed to the socket by then.
* :class:`AppendBatchSizeTracker` (§5.1) and :class:`FlowBatchSizeTrackers` (§5.2): the adaptive
  block size, one tracker per flow in a size- and idle-bounded map.

The compiled twin (``pravega_wire._appends``) gives the same results and raises the same errors;
:mod:`pravega_wire.appends` picks one at import. The record :class:`Append`, the error classes
and the constants are defined here once and shared by both twins.

Deliberate differences from Java, all on inputs where Java would misbehave:

* Sessions can be forgotten (:meth:`CommandEncoder.close_session`); Java keeps every session ever
  set up and drops the connection at the 2000th. Here the cap counts live sessions.
* A SetupAppend that would give a writer id set up for one segment a second segment on the same
  connection is refused: the server maps a writer id to the latest segment only, so Java would
  silently misroute the first segment's appends.
* No frame ever exceeds the segment store's 16 777 215-byte limit: block sizes are capped at
  :data:`MAX_BLOCK_SIZE`, an append's data at :data:`MAX_APPEND_SIZE`, and a queued writer whose
  next append would overflow its standalone block is flushed first.
* The decoder rejects an AppendBlockEnd that carries data after a block without a PartialEvent
  (Java silently drops those bytes).
* The encoder refuses to write AppendBlock, AppendBlockEnd, PartialEvent or Event as commands
  (they would break its own framing): appends go through :meth:`CommandEncoder.append`.
* Queued writers are flushed in the order they first queued data (Java: ``HashMap`` order).
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
import uuid as _uuid

from . import commands as C
from .codec import encode as _encode_command
from .codec import encode_event as _encode_event
from .errors import (ConditionalAppendError, ConnectionClosedError, EncoderStateError,
                     InvalidMessageError)

__all__ = [
    "IMPLEMENTATION", "Append", "AppendDecoder", "CommandEncoder", "AppendBatchSizeTracker",
    "FlowBatchSizeTrackers", "EncoderStateError", "ConditionalAppendError",
    "BatchSizeConstants", "read_batch_size_env",
    "MAX_QUEUED_EVENTS", "MAX_QUEUED_SIZE", "MAX_SESSIONS", "MAX_BATCH_TIME_MILLIS",
    "MAX_BATCH_SIZE", "BASE_TIME_NANOS", "BASE_SIZE", "OUTSTANDING_FRACTION", "MAX_APPEND_SIZE",
    "MAX_BLOCK_SIZE", "DEFAULT_MAX_FLOWS", "DEFAULT_FLOW_IDLE_EXPIRY_NS",
]

IMPLEMENTATION = "pure"

# --------------------------------------------------------------------------------------------
# Constants

_MAX_FRAME = C.MAX_WIRECOMMAND_SIZE  # whole frame, header included (the server's limit)
_I32_MIN, _I32_MAX = -(2 ** 31), 2 ** 31 - 1
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1

#: A writer queued behind another writer's block is flushed once it holds more events than this.
MAX_QUEUED_EVENTS = 500
#: ... or more bytes than this.
MAX_QUEUED_SIZE = 1024 * 1024
#: Live append sessions per encoder (Java: sessions ever set up) before the connection is dropped.
MAX_SESSIONS = 2000
#: The batch window of §4.5/§5.1, in milliseconds.
MAX_BATCH_TIME_MILLIS = 20
#: The largest block size the encoder opens: a batched AppendBlock frame is 8 + 16 + B + 8 bytes.
MAX_BLOCK_SIZE = _MAX_FRAME - 8 - 16 - 8
#: The largest ``Append.data`` the encoder accepts: the size at which every framing of it (a
#: block of its own, or split with up to all but one byte in an AppendBlockEnd) still fits.
MAX_APPEND_SIZE = _MAX_FRAME - 8 - 44
# The largest standalone block (a flushed queue): AppendBlock frame 8 + 16 + P bytes.
_MAX_QUEUED_BLOCK = _MAX_FRAME - 8 - 16

#: Default bound of a :class:`FlowBatchSizeTrackers` map (Java: 100 000). A pooled connection
#: carries a few flows per writer or reader using it; ten thousand is far beyond that, and
#: costs at most a few MB.
DEFAULT_MAX_FLOWS = 10_000
#: Default idle expiry of a flow's tracker: 10 minutes. Java passes 5000 meaning milliseconds
#: to an API taking seconds (83 minutes); 5 s would drop the statistics of a writer pausing
#: between bursts, 83 minutes keeps dead flows of a long-lived connection for no use. A flow
#: idle for 10 minutes restarts from the defaults, which cost it one mis-sized block.
DEFAULT_FLOW_IDLE_EXPIRY_NS = 600 * 1_000_000_000

_UUID = _uuid.UUID
_HEADER = struct.Struct(">ii")
_BLOCK_HEADER = struct.Struct(">ii16s")  # AppendBlock: type, length, writerId
_END_HEAD = struct.Struct(">ii16sii")  # AppendBlockEnd: type, length, writerId, whole, dataLen
_END_TAIL = struct.Struct(">iqq")  # AppendBlockEnd: numEvents, lastEventNumber, requestId
_END_FIXED = 44  # AppendBlockEnd payload without its data

_APPEND_BLOCK = C.AppendBlock.TYPE
_APPEND_BLOCK_END = C.AppendBlockEnd.TYPE
_PARTIAL_EVENT = C.PartialEvent.TYPE
_PADDING = C.Padding.TYPE


# --------------------------------------------------------------------------------------------
# Errors (shared by both twins)


# --------------------------------------------------------------------------------------------
# The Append record (shared by both twins)

_REQUIRED = object()
_tuple_new = tuple.__new__


class Append(C._Record):
    """One append as the server sees it (and as a client hands it to the encoder).

    ``event_number`` is the number of the *last* event in ``data``; ``event_count`` how many
    events ``data`` holds; ``data`` is opaque bytes (for event streams: Event records, each an
    8-byte header and the payload); ``expected_length`` is set for a conditional append only;
    ``request_id`` is the writer's request id (Java calls it ``flowId``; the flow is its high 32
    bits). Immutable and equal by value.
    """

    _fields = ("segment", "writer_id", "event_number", "event_count", "data", "expected_length",
               "request_id")
    __slots__ = ()

    @property
    def is_conditional(self) -> bool:
        return self.expected_length is not None

    def __repr__(self):
        data = self.data
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        shown = bytes(data[:16]).hex() + ("…" if n > 16 else "")
        return (f"Append(segment={self.segment!r}, writer_id={self.writer_id!r}, "
                f"event_number={self.event_number}, event_count={self.event_count}, "
                f"data=<{n} bytes {shown}>, expected_length={self.expected_length!r}, "
                f"request_id={self.request_id})")


# Written out rather than generated by ``_Record``: ``request_id`` is required although it
# follows the defaulted ``expected_length`` (Java's constructor order).
def _append_new(cls, segment, writer_id, event_number, event_count, data, expected_length=None,
                request_id=_REQUIRED):
    if request_id is _REQUIRED:
        raise TypeError("Append() missing required argument: 'request_id'")
    return _tuple_new(cls, (segment, writer_id, event_number, event_count, data, expected_length,
                            request_id))


_append_new.__qualname__ = "Append.__new__"
Append.__new__ = _append_new


# --------------------------------------------------------------------------------------------
# Batch-size constants (read once from the environment, as Java does at class load)

class BatchSizeConstants(C._Record):
    """The tunables of §5.1 as read from the environment."""

    _fields = ("max_batch_size", "base_time_nanos", "base_size", "outstanding_fraction")
    __slots__ = ()


_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


def _env_int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    if not _INT_RE.match(raw) or not (_I32_MIN <= int(raw) <= _I32_MAX):
        raise ValueError(f"environment variable {name}={raw!r} is not a 32-bit integer")
    return int(raw)


def read_batch_size_env(environ=None) -> BatchSizeConstants:
    """The §5.1 constants from ``environ`` (default ``os.environ``), as Java reads them:

    ``PRAVEGA_MAX_BATCH_SIZE`` (default 523 264), ``PRAVEGA_BATCH_BASE_TIME_NANOS`` (0),
    ``PRAVEGA_BATCH_BASE_SIZE`` (0) and ``PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR`` (2; the
    fraction is ``1.0 / denominator``, +inf for 0 as in Java). Each must be a 32-bit integer
    (Java's ``Integer.parseInt``), else :class:`ValueError` names the variable. The maximum batch
    size must lie in [0, 8 388 607] (Java documents "less than MAX_WIRECOMMAND_SIZE / 2", and
    fails on every block when it is negative).
    """
    env = os.environ if environ is None else environ
    max_batch = _env_int(env, "PRAVEGA_MAX_BATCH_SIZE", 2 * 262144 - 1024)
    if not (0 <= max_batch < C.MAX_WIRECOMMAND_SIZE // 2):
        raise ValueError(f"environment variable PRAVEGA_MAX_BATCH_SIZE={max_batch} must lie in "
                         f"[0, {C.MAX_WIRECOMMAND_SIZE // 2 - 1}]")
    base_time = _env_int(env, "PRAVEGA_BATCH_BASE_TIME_NANOS", 0)
    base_size = _env_int(env, "PRAVEGA_BATCH_BASE_SIZE", 0)
    denominator = _env_int(env, "PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR", 2)
    return BatchSizeConstants(max_batch, base_time, base_size, _java_div(1.0, denominator))


# --------------------------------------------------------------------------------------------
# Java arithmetic: double division, Math.min/max with NaN, (int) casts, wrapping longs/ints


def _java_div(a: float, b: float) -> float:
    """``a / b`` with Java's IEEE semantics (x/0 = ±inf, 0/0 = NaN) instead of an exception."""
    if b == 0.0:
        if a != a or a == 0.0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _java_max(a: float, b: float) -> float:
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


def _java_min(a: float, b: float) -> float:
    if a != a or b != b:
        return math.nan
    return a if a <= b else b


def _java_int(x: float) -> int:
    """Java's ``(int) double``: NaN → 0, truncation toward zero, saturation at the int range."""
    if x != x:
        return 0
    if x >= _I32_MAX:
        return _I32_MAX
    if x <= _I32_MIN:
        return _I32_MIN
    return int(x)


def _wrap32(x: int) -> int:
    return ((x + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def _wrap64(x: int) -> int:
    return ((x + 2 ** 63) & 0xFFFFFFFFFFFFFFFF) - 2 ** 63


def _check_int(value, lo: int, hi: int, what: str) -> int:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidMessageError(f"{what} must be an int, got {type(value).__name__}")
    if not (lo <= value <= hi):
        raise InvalidMessageError(f"{what} = {value} is out of range [{lo}, {hi}]")
    return value


_CONSTANTS = read_batch_size_env()
#: ``PRAVEGA_MAX_BATCH_SIZE`` (default ``2 * 262144 - 1024`` = 523 264).
MAX_BATCH_SIZE = _CONSTANTS.max_batch_size
#: ``PRAVEGA_BATCH_BASE_TIME_NANOS`` (default 0).
BASE_TIME_NANOS = _CONSTANTS.base_time_nanos
#: ``PRAVEGA_BATCH_BASE_SIZE`` (default 0).
BASE_SIZE = _CONSTANTS.base_size
#: ``1.0 / PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR`` (default 0.5).
OUTSTANDING_FRACTION = _CONSTANTS.outstanding_fraction

_NANOS_PER_MILLI = 1_000_000
_EVENT_SIZE_INITIAL = math.sqrt(1024.0)  # square-root weighted
_EVENT_SIZE_WEIGHT = 0.01
_NPA_INITIAL = 10.0 * _NANOS_PER_MILLI
_NPA_WEIGHT = 0.001
_OUTSTANDING_INITIAL = 20.0
_OUTSTANDING_WEIGHT = 0.001


def _sqrt_weighted(x: float) -> float:
    return math.copysign(math.sqrt(abs(x)), x) if x else 0.0


# --------------------------------------------------------------------------------------------
# AppendBatchSizeTracker (§5.1)


class AppendBatchSizeTracker:
    """Java's ``AppendBatchSizeTrackerImpl``: how big the next append block should be.

    It follows three exponential moving averages: the append size (square-root weighted,
    weight 0.01, initially 1024), the nanoseconds between appends (weight 0.001, initially
    10 ms) and the appends outstanding when an ack arrives (weight 0.001, initially 20).
    :meth:`get_append_block_size` returns 0 (no batching) while at most one append is
    unacknowledged, else about half the appends in flight times the append size, capped by what
    the writer produces in 20 ms and by ``max_batch_size``.

    ``clock`` returns monotonic nanoseconds (``time.monotonic_ns`` by default; inject a fake
    one in tests). The arithmetic is Java's: a division by zero gives ±infinity or NaN, NaN
    propagates through min/max, the double → int cast truncates, saturates and maps NaN to 0,
    and long and int sums wrap. So no input raises and the result always lies in
    ``[0, max_batch_size]``.
    """

    __slots__ = ("_clock", "_last_append_number", "_last_ack_number", "_last_append_time",
                 "_last_ack_time", "_event_size", "_npa", "_outstanding", "_max_batch_size",
                 "_base_time_nanos", "_base_size", "_outstanding_fraction", "live")

    def __init__(self, clock=time.monotonic_ns, *, max_batch_size: int = MAX_BATCH_SIZE,
                 base_time_nanos: int = BASE_TIME_NANOS, base_size: int = BASE_SIZE,
                 outstanding_fraction: float = OUTSTANDING_FRACTION):
        if not callable(clock):
            raise TypeError("clock must be a callable returning nanoseconds")
        self._max_batch_size = _check_int(max_batch_size, 0, _I32_MAX, "max_batch_size")
        self._base_time_nanos = _check_int(base_time_nanos, _I32_MIN, _I32_MAX, "base_time_nanos")
        self._base_size = _check_int(base_size, _I32_MIN, _I32_MAX, "base_size")
        self._outstanding_fraction = float(outstanding_fraction)
        self._clock = clock
        now = _check_int(clock(), _I64_MIN, _I64_MAX, "clock()")
        self._last_append_time = now
        self._last_ack_time = now
        self._last_append_number = 0
        self._last_ack_number = 0
        self._event_size = _EVENT_SIZE_INITIAL
        self._npa = _NPA_INITIAL
        self._outstanding = _OUTSTANDING_INITIAL
        #: False once a :class:`FlowBatchSizeTrackers` map has evicted this tracker.
        self.live = True

    def record_append(self, event_number: int, size: int) -> None:
        """Note an append of ``size`` bytes (Event headers included) numbered ``event_number``."""
        _check_int(event_number, _I64_MIN, _I64_MAX, "event_number")
        _check_int(size, 0, _I32_MAX, "size")
        now = _check_int(self._clock(), _I64_MIN, _I64_MAX, "clock()")
        if now < self._last_append_time:
            now = self._last_append_time
        gap = now - self._last_append_time
        self._last_append_time = now
        self._last_append_number = event_number
        self._npa = _NPA_WEIGHT * gap + (1.0 - _NPA_WEIGHT) * self._npa
        self._event_size = (_EVENT_SIZE_WEIGHT * _sqrt_weighted(size)
                            + (1.0 - _EVENT_SIZE_WEIGHT) * self._event_size)

    def record_ack(self, event_number: int) -> int:
        """Note an acknowledgement up to ``event_number`` (DataAppended.eventNumber); returns
        the appends still outstanding (last appended number − ``event_number``)."""
        _check_int(event_number, _I64_MIN, _I64_MAX, "event_number")
        now = _check_int(self._clock(), _I64_MIN, _I64_MAX, "clock()")
        if now > self._last_ack_time:
            self._last_ack_time = now
        self._last_ack_number = event_number
        outstanding = _wrap64(self._last_append_number - event_number)
        self._outstanding = (_OUTSTANDING_WEIGHT * outstanding
                             + (1.0 - _OUTSTANDING_WEIGHT) * self._outstanding)
        return outstanding

    def get_append_block_size(self) -> int:
        """The block size for the next block (0: do not batch)."""
        if _wrap64(self._last_append_number - self._last_ack_number) <= 1:
            return 0
        npa = self._npa
        max_appends = _java_max(1.0, _java_div(MAX_BATCH_TIME_MILLIS * _NANOS_PER_MILLI * 1.0, npa))
        extra = _java_max(0.0, _java_div(float(self._base_time_nanos), npa))
        appends = _java_max(_java_min(self._outstanding * self._outstanding_fraction + extra,
                                      max_appends), 1.0)
        event_size = self._event_size * abs(self._event_size)
        size = _wrap32(_java_int(appends * event_size) + self._base_size)
        return max(min(size, self._max_batch_size), 0)

    def get_batch_timeout(self) -> int:
        """The batch window in milliseconds (20)."""
        return MAX_BATCH_TIME_MILLIS

    @property
    def last_used(self) -> int:
        """Clock time (ns) of the latest append or ack recorded (or of the creation)."""
        return max(self._last_append_time, self._last_ack_time)

    def __repr__(self):
        return (f"AppendBatchSizeTracker(last_append={self._last_append_number}, "
                f"last_ack={self._last_ack_number}, block_size={self.get_append_block_size()})")


# --------------------------------------------------------------------------------------------
# FlowBatchSizeTrackers (§5.2)


class FlowBatchSizeTrackers:
    """One :class:`AppendBatchSizeTracker` per flow (``request_id >> 32``), created on first use,
    in a map bounded in size and by idle time.

    An entry is *idle* when neither an append nor an ack has been recorded on it for
    ``idle_expiry_ns``. Idle entries are dropped by a sweep, which runs when a new flow is added
    and either the map is full or half the expiry has passed since the last sweep (or when
    :meth:`expire` is called). If the map is still full after dropping idle entries, the least
    recently used tenth is evicted. An evicted tracker gets ``live = False``; its flow starts
    again when it next appears. Memory is therefore bounded by ``max_flows`` and the cost of
    sweeps is amortised over the flows added.

    A new flow's tracker starts from the estimates (append size, time between appends, appends
    outstanding) of the tracker made before it in this map, that is on the same connection to
    the same store: Java's defaults only for the first. Java's trackers all start cold, and
    their slow averages (weights 0.01 and 0.001) then keep a fresh writer's blocks small for
    thousands of appends; a burst written without yielding to the event loop sees no
    acknowledgement at all, so it would be cut into ~1 KiB blocks whatever its length.
    """

    __slots__ = ("_clock", "_trackers", "_max_flows", "_idle_expiry_ns", "_last_sweep",
                 "_tracker_args", "_latest")

    def __init__(self, clock=time.monotonic_ns, *, max_flows: int = DEFAULT_MAX_FLOWS,
                 idle_expiry_ns: int = DEFAULT_FLOW_IDLE_EXPIRY_NS, **tracker_args):
        if not callable(clock):
            raise TypeError("clock must be a callable returning nanoseconds")
        self._max_flows = _check_int(max_flows, 1, _I32_MAX, "max_flows")
        self._idle_expiry_ns = _check_int(idle_expiry_ns, 1, _I64_MAX, "idle_expiry_ns")
        self._clock = clock
        self._trackers = {}
        self._last_sweep = clock()
        AppendBatchSizeTracker(clock, **tracker_args)  # validates the arguments now
        self._tracker_args = tracker_args
        self._latest = None

    def tracker(self, flow_id: int) -> AppendBatchSizeTracker:
        """The tracker of ``flow_id``, created if the flow has none (starting from the
        estimates of the tracker made before it, Java's defaults for the first)."""
        t = self._trackers.get(flow_id)
        if t is None:
            _check_int(flow_id, _I32_MIN, _I32_MAX, "flow_id")
            now = self._clock()
            if (len(self._trackers) >= self._max_flows
                    or now - self._last_sweep >= self._idle_expiry_ns // 2):
                self._sweep(now)
            t = AppendBatchSizeTracker(self._clock, **self._tracker_args)
            latest = self._latest
            if latest is not None:
                t._event_size, t._npa, t._outstanding = (
                    latest._event_size, latest._npa, latest._outstanding)
            self._trackers[flow_id] = self._latest = t
        return t

    def get(self, flow_id: int):
        """The tracker of ``flow_id`` if the map holds one, else None (nothing is created)."""
        return self._trackers.get(flow_id)

    def discard(self, flow_id: int) -> bool:
        """Drop the tracker of ``flow_id`` (its flow set up no more appends here: the encoder
        calls this when it closes the flow's session), so that the map holds the trackers of
        live flows, not of every flow the connection ever carried. The tracker gets
        ``live = False``; the next flow still starts from its estimates. Returns whether the
        map held one."""
        t = self._trackers.pop(flow_id, None)
        if t is None:
            return False
        t.live = False
        return True

    def expire(self) -> int:
        """Drop the idle entries now; returns how many were dropped."""
        before = len(self._trackers)
        self._sweep(self._clock(), evict=False)
        return before - len(self._trackers)

    def _sweep(self, now: int, evict: bool = True) -> None:
        self._last_sweep = now
        limit = self._idle_expiry_ns
        trackers = self._trackers
        for flow_id, t in list(trackers.items()):
            if now - t.last_used > limit:
                t.live = False
                del trackers[flow_id]
        if evict and len(trackers) >= self._max_flows:
            keep = self._max_flows - max(1, self._max_flows // 10)
            by_age = sorted(trackers.items(), key=lambda item: item[1].last_used)
            for flow_id, t in by_age[:len(trackers) - keep]:
                t.live = False
                del trackers[flow_id]

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, flow_id) -> bool:
        return flow_id in self._trackers

    @property
    def max_flows(self) -> int:
        return self._max_flows

    @property
    def idle_expiry_ns(self) -> int:
        return self._idle_expiry_ns


# --------------------------------------------------------------------------------------------
# AppendDecoder (server side, §4.6)


class _Writer:
    __slots__ = ("segment", "last_event_number")

    def __init__(self, segment):
        self.segment = segment
        self.last_event_number = 0


def _writer_key(writer_id):
    """The dict key of a writer id: its 128-bit int for a UUID (``uuid.UUID`` hashes in Python
    code, an int in C), the object itself otherwise (it then matches nothing set up)."""
    if type(writer_id) is _UUID or isinstance(writer_id, _UUID):
        return writer_id.int
    return writer_id


def _nbytes(data) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def _byte_buffer(data, what):
    """``data`` as something sliced and measured in bytes: bytes and bytearray as they are, any
    other contiguous buffer as a flat byte memoryview."""
    if isinstance(data, (bytes, bytearray)):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidMessageError(f"{what} must be bytes-like, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise InvalidMessageError(f"{what} must be a contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class AppendDecoder:
    """Server side of the append path: what Java's ``AppendDecoder`` makes of each command.

    Feed it, in order, every command a ``FrameDecoder(server=True)`` decodes on one connection;
    :meth:`process` returns the list of what follows it down the pipeline: an :class:`Append` for
    a completed AppendBlock/AppendBlockEnd pair, a lone AppendBlockEnd, a ConditionalAppend
    (data = the whole Event record) or a ConditionalBlockEnd (these two with
    ``expected_length``), the SetupAppend itself (after recording the writer), nothing for an
    AppendBlock (held until its end) or a top-level Padding, and every other command unchanged.

    Every violation for which Java's segment store closes the connection raises
    :class:`~pravega_wire.InvalidMessageError`; the decoder is then unusable (later calls raise
    too), as the connection is to be closed.
    """

    __slots__ = ("_writers", "_block", "_error")

    def __init__(self):
        self._writers = {}
        self._block = None
        self._error = None

    # -- what the server needs to know -----------------------------------------------------

    def segment_of(self, writer_id):
        """The segment ``writer_id`` was set up for on this connection (the latest
        SetupAppend), or None."""
        w = self._writers.get(_writer_key(writer_id))
        return None if w is None else w.segment

    def last_event_number(self, writer_id):
        """The last event number seen from ``writer_id`` (0 right after its SetupAppend), or
        None if the writer is not set up."""
        w = self._writers.get(_writer_key(writer_id))
        return None if w is None else w.last_event_number

    def forget_writer(self, writer_id) -> bool:
        """Drop ``writer_id``'s state (e.g. once the store failed its append and forgot the
        writer). Its appends are then rejected until a new SetupAppend. Returns whether the
        writer was known."""
        return self._writers.pop(_writer_key(writer_id), None) is not None

    @property
    def writer_count(self) -> int:
        """How many writers are set up on this connection."""
        return len(self._writers)

    @property
    def in_block(self) -> bool:
        """True while an AppendBlock waits for its AppendBlockEnd."""
        return self._block is not None

    # -- processing ----------------------------------------------------------------------------

    def process(self, cmd) -> list:
        """What the decoder emits for ``cmd`` (see the class docstring)."""
        if self._error is not None:
            raise InvalidMessageError(f"append decoder failed earlier: {self._error}")
        try:
            return self._process(cmd)
        except InvalidMessageError as e:
            self._error = e.args[0]
            self._block = None
            raise

    def _writer(self, writer_id) -> _Writer:
        w = self._writers.get(_writer_key(writer_id))
        if w is None:
            raise InvalidMessageError(f"writer {writer_id} referenced before SetupAppend")
        return w

    def _process(self, cmd) -> list:
        t = type(cmd)
        if self._block is not None and t is not C.AppendBlockEnd:
            raise InvalidMessageError(
                f"Unexpected {t.__name__} following an append block (only AppendBlockEnd may "
                f"follow AppendBlock)")
        if t is C.AppendBlockEnd:
            return [self._block_end(cmd)]
        if t is C.AppendBlock:
            self._writer(cmd.writer_id)
            self._block = cmd
            return []
        if t is C.SetupAppend:
            self._writers[_writer_key(cmd.writer_id)] = _Writer(cmd.segment)
            return [cmd]
        if t is C.Padding:
            return []
        if t is C.ConditionalAppend or t is C.ConditionalBlockEnd:
            w = self._writer(cmd.writer_id)
            if cmd.event_number < w.last_event_number:
                raise InvalidMessageError(
                    f"Last event number went backwards: {t.__name__} event number "
                    f"{cmd.event_number} after {w.last_event_number} for writer "
                    f"{cmd.writer_id} and segment {w.segment!r}")
            w.last_event_number = cmd.event_number
            data = _encode_event(cmd.event.data) if t is C.ConditionalAppend else cmd.data
            return [Append(w.segment, cmd.writer_id, cmd.event_number, 1, data,
                           cmd.expected_offset, cmd.request_id)]
        if t is C.PartialEvent or t is C.Event or not isinstance(cmd, C.Command):
            raise InvalidMessageError(
                f"{t.__name__} is not a command a client may send at top level")
        return [cmd]

    def _block_end(self, end) -> Append:
        writer_id = end.writer_id
        w = self._writer(writer_id)
        if end.num_events <= 0:
            raise InvalidMessageError(
                f"Invalid number of events in block. numEvents : {end.num_events}")
        if end.last_event_number < w.last_event_number:
            raise InvalidMessageError(
                f"Last event number went backwards, Segment last Event number : "
                f"{w.last_event_number} , Append block End Event number : "
                f"{end.last_event_number}, for writer ID: {writer_id} and Segment Name: "
                f"{w.segment}")
        block = self._block
        if block is None:
            data = end.data
        else:
            if block.writer_id != writer_id:
                raise InvalidMessageError(
                    f"Writer ID mismatch between Append Block and Append block End, Append "
                    f"block Writer ID : {block.writer_id}, Append block End Writer ID: "
                    f"{writer_id}")
            data = _block_data(block.data, end)
            self._block = None
        w.last_event_number = end.last_event_number
        return Append(w.segment, writer_id, end.last_event_number, end.num_events, data, None,
                      end.request_id)


def _block_data(block_data, end):
    """The append data of a block and its end: whole events, then the PartialEvent's bytes and
    the end's data, or the whole events alone when the block ends with Padding."""
    size = _nbytes(block_data)
    whole = end.size_of_whole_events
    if whole < 0 or whole > size:
        raise InvalidMessageError(
            f"Invalid SizeOfWholeEvents in block : {whole}, Append block data bytes : {size}")
    end_data = end.data
    end_len = _nbytes(end_data)
    remaining = size - whole
    if remaining == 0:
        if end_len:
            raise InvalidMessageError(
                f"AppendBlockEnd carries {end_len} data bytes but its block ends with no "
                f"PartialEvent to continue (Java's segment store would drop them)")
        return block_data
    if remaining < 8:
        raise InvalidMessageError(
            f"{remaining} bytes after the whole events of an append block: not enough for a "
            f"PartialEvent or Padding header")
    view = memoryview(block_data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    type_code, length = _HEADER.unpack_from(view, whole)
    if length < 0:
        raise InvalidMessageError(f"negative length {length} in the sub-frame ending an append "
                                  f"block")
    if length > remaining - 8:
        raise InvalidMessageError(
            f"the sub-frame ending an append block announces {length} bytes but only "
            f"{remaining - 8} remain")
    if type_code == _PADDING:
        if end_len:
            raise InvalidMessageError("Unexpected data in BlockEnd (after a Padding)")
        return block_data[:whole]
    if type_code != _PARTIAL_EVENT:
        cls = C.COMMAND_TYPES.get(type_code)
        found = cls.__name__ if cls is not None else f"unknown wire command {type_code}"
        raise InvalidMessageError(
            f"Found {found} at end of append block but was expecting a partialEvent or padding.")
    start = whole + 8
    return b"".join((view[:whole], view[start:start + length], end_data))


# --------------------------------------------------------------------------------------------
# CommandEncoder (client side, §4.2–4.5)


class _Session:
    __slots__ = ("writer_id", "writer_bytes", "segment", "request_id", "last_event_number",
                 "event_count", "pending", "pending_bytes", "queued", "flow_id", "tracker")

    def __init__(self, writer_id, segment, request_id):
        self.writer_id = writer_id
        self.writer_bytes = writer_id.bytes
        self.segment = segment
        self.request_id = request_id
        self.last_event_number = -1
        self.event_count = 0
        self.pending = []
        self.pending_bytes = 0
        self.queued = False
        self.flow_id = None
        self.tracker = None


_EMPTY = b""
_NOT_FRAMED = (C.AppendBlock, C.AppendBlockEnd, C.PartialEvent, C.Event)


class CommandEncoder:
    """The client's encoder for one connection: Java's ``CommandEncoder``, byte for byte.

    ``block_size`` chooses the batching: ``None`` for the adaptive per-flow trackers
    (:class:`FlowBatchSizeTrackers`, fed by :meth:`record_ack`), or a callable
    ``flow_id -> int`` giving the block size of a block opened by that flow (an int is accepted
    as a constant). ``clock`` (monotonic nanoseconds) feeds the trackers; ``trackers`` may
    supply the tracker map. ``max_sessions`` caps the live append sessions (Java: 2000).

    * :meth:`write_command` frames any command but the append framing ones. SetupAppend starts
      a session per (segment, writer id); every command closes the open block (Padding) and
      flushes the queued writers first, except Hello, which is refused while a block is open.
    * :meth:`append` / :meth:`append_event` add an append: into the open block of its writer, as
      a block of its own, or queued behind another writer's block.
    * :meth:`batch_timeout` is the 20 ms timer of §4.5.
    * :meth:`data_to_send` drains what Java would have written to the socket by then. An open
      block's bytes stay in the encoder (:attr:`buffered`) until the block completes.

    Errors, raised before anything changes: :class:`~pravega_wire.InvalidMessageError` for
    Java's InvalidMessageException (eventCount ≤ 0, an append without SetupAppend, event numbers
    not increasing), for fields that cannot be framed (wrong types, out of range, a string
    over 65 535 bytes, an append over :data:`MAX_APPEND_SIZE`) and for a writer id set up for
    a second segment while its first session is live; :class:`ConditionalAppendError`
    for a conditional Append (Java: IllegalArgumentException); :class:`EncoderStateError` for a
    Hello while a block is open (Java: IllegalStateException);
    :class:`~pravega_wire.ConnectionClosedError` when a SetupAppend would exceed
    ``max_sessions`` (the encoder then closes, as Java drops the connection; the bytes flushed
    before stay available to :meth:`data_to_send`) and for any later call.

    Not thread-safe: one connection's task drives it (Java serialises with a lock).
    """

    __slots__ = ("_buf", "_flushed", "_sessions", "_writer_segments", "_queued", "_owner",
                 "_block_size", "_bytes_left", "_token", "_closed", "_max_sessions", "_size_fn",
                 "_trackers", "_last_segment", "_last_writer", "_last_session")

    def __init__(self, block_size=None, *, clock=time.monotonic_ns, trackers=None,
                 max_sessions: int = MAX_SESSIONS):
        if block_size is None:
            self._trackers = trackers if trackers is not None else FlowBatchSizeTrackers(clock)
            self._size_fn = None
        else:
            if trackers is not None:
                raise TypeError("trackers are only used with block_size=None")
            if isinstance(block_size, int) and not isinstance(block_size, bool):
                constant = block_size
                block_size = lambda flow_id: constant  # noqa: E731
            elif not callable(block_size):
                raise TypeError("block_size must be None, a callable flow_id -> int, or an int")
            self._size_fn = block_size
            self._trackers = None
        self._max_sessions = _check_int(max_sessions, 1, _I32_MAX, "max_sessions")
        self._buf = bytearray()
        self._flushed = 0
        self._sessions = {}
        self._writer_segments = {}
        self._queued = []
        self._owner = None
        self._block_size = 0
        self._bytes_left = 0
        self._token = 0
        self._closed = False
        self._last_segment = None
        self._last_writer = None
        self._last_session = None

    # -- state -------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes encoded but not yet released for sending: an open block's, which stay in
        the encoder until the block completes (``buffered_after`` in the Java vectors)."""
        return len(self._buf) - self._flushed

    @property
    def pending(self) -> int:
        """Bytes released for sending and not yet drained by :meth:`data_to_send`."""
        return self._flushed

    @property
    def closed(self) -> bool:
        """True once the session cap closed the encoder."""
        return self._closed

    @property
    def session_count(self) -> int:
        """Live append sessions (set up and not closed)."""
        return len(self._sessions)

    @property
    def block_open(self) -> bool:
        """True while a block is open (its bytes held back)."""
        return self._owner is not None

    @property
    def trackers(self):
        """The :class:`FlowBatchSizeTrackers` (None with a fixed ``block_size``)."""
        return self._trackers

    # -- output --------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything released for the socket since the last call (b"" if nothing)."""
        n = self._flushed
        if not n:
            return _EMPTY
        buf = self._buf
        if n == len(buf):
            out = bytes(buf)
            buf.clear()
        else:
            with memoryview(buf) as view:
                out = bytes(view[:n])
            del buf[:n]
        self._flushed = 0
        return out

    def _flush(self):
        self._flushed = len(self._buf)

    def _check_open(self):
        if self._closed:
            raise ConnectionClosedError(
                "the encoder was closed: too many append sessions on this connection")

    # -- commands ------------------------------------------------------------------------------

    def write_command(self, cmd) -> None:
        """Frame ``cmd`` (any command but AppendBlock, AppendBlockEnd, PartialEvent and Event,
        which only :meth:`append` produces) and release it for sending, closing the open block
        and flushing the queued writers first."""
        self._check_open()
        if not isinstance(cmd, C.Command):
            raise InvalidMessageError(f"not a WireCommand: {type(cmd).__name__}")
        t = type(cmd)
        if t in _NOT_FRAMED:
            raise InvalidMessageError(
                f"{t.__name__} is part of the append framing: use append() instead")
        frame = _encode_command(cmd)  # every error before any state changes
        if t is C.Hello:
            if self._owner is not None or self._queued:
                raise EncoderStateError("Hello may not be written while an append block is open")
            self._buf += frame
            self._flush()
            return
        if t is C.SetupAppend:
            wkey = _writer_key(cmd.writer_id)
            other = self._writer_segments.get(wkey)
            if other is not None and other != cmd.segment:
                raise InvalidMessageError(
                    f"writer {cmd.writer_id} is already set up for segment {other!r} on this "
                    f"connection, and the server maps a writer id to one segment: close that "
                    f"session first")
        self._break_block()
        self._flush_queued()
        if t is C.SetupAppend:
            key = (cmd.segment, wkey)
            if key not in self._sessions and len(self._sessions) >= self._max_sessions:
                self._flush()
                self._closed = True
                raise ConnectionClosedError(
                    f"closed due to memory limit: {len(self._sessions)} append sessions are "
                    f"set up on this connection (the limit is {self._max_sessions})")
            self._buf += frame
            self._sessions[key] = _Session(cmd.writer_id, cmd.segment, cmd.request_id)
            self._writer_segments[wkey] = cmd.segment
            self._last_session = self._last_segment = self._last_writer = None
        else:
            self._buf += frame
        self._flush()

    def close_session(self, segment: str, writer_id) -> bool:
        """Forget the session of (``segment``, ``writer_id``): later appends for it are refused
        as not set up. Data it already gave is not lost: an open block of its own or a queue
        still goes out as usual, after which nothing refers to it. Its flow's batch-size tracker
        is dropped too (:meth:`FlowBatchSizeTrackers.discard`). Returns whether the session
        existed."""
        self._check_open()
        wkey = _writer_key(writer_id)
        try:
            s = self._sessions.pop((segment, wkey), None)
        except TypeError:  # an unhashable segment or writer id
            return False
        if s is None:
            return False
        del self._writer_segments[wkey]
        if s is self._last_session:
            self._last_session = self._last_segment = self._last_writer = None
        if s.tracker is not None and self._trackers is not None:
            self._trackers.discard(s.flow_id)  # (another session of that flow gets a new one)
        return True

    def batch_timeout(self, token: int) -> int:
        """The batch timer's tick: if no block started or completed since the tick that
        returned ``token``, close the open block (Padding) and flush the queued writers.
        Returns the token to pass next time (start with -1)."""
        self._check_open()
        current = self._token
        if current == token:
            self._break_block()
            self._flush_queued()
            self._flush()
        return current

    def record_ack(self, request_id: int, event_number: int):
        """Feed a DataAppended to its flow's tracker (``request_id >> 32``). Returns the appends
        outstanding on that flow, or None if no tracker follows the flow (a fixed block size,
        or a flow that never appended here)."""
        _check_int(request_id, _I64_MIN, _I64_MAX, "request_id")
        _check_int(event_number, _I64_MIN, _I64_MAX, "event_number")
        if self._trackers is None:
            return None
        t = self._trackers.get(request_id >> 32)
        if t is None:
            return None
        return t.record_ack(event_number)

    # -- appends -------------------------------------------------------------------------------

    def append(self, append: Append) -> None:
        """Add ``append`` (an :class:`Append`; its ``data`` is sent as is)."""
        if type(append) is not Append:
            raise InvalidMessageError(f"expected an Append, got {type(append).__name__}")
        segment, writer_id, event_number, event_count, data, expected_length, request_id = append
        self._check_open()
        if type(data) is not bytes:
            data = _byte_buffer(data, "Append.data")
        self._append(segment, writer_id, event_number, event_count, expected_length, request_id,
                     _EMPTY, data)

    def append_event(self, segment: str, writer_id, event_number: int, payload,
                     request_id: int) -> None:
        """Add one event: an append of ``payload`` framed as an Event record (its 8-byte header
        built in place), with event count 1."""
        self._check_open()
        if type(payload) is not bytes:
            payload = _byte_buffer(payload, "payload")
        n = _nbytes(payload)
        if n > MAX_APPEND_SIZE - 8:
            raise InvalidMessageError(
                f"append of {n + 8} bytes exceeds the {MAX_APPEND_SIZE}-byte limit")
        self._append(segment, writer_id, event_number, 1, None, request_id, _HEADER.pack(0, n),
                     payload)

    def _session(self, segment, writer_id):
        if segment is self._last_segment and writer_id is self._last_writer:
            return self._last_session
        try:
            s = self._sessions.get((segment, _writer_key(writer_id)))
        except TypeError:  # an unhashable segment or writer id
            s = None
        if s is not None:
            self._last_segment, self._last_writer, self._last_session = segment, writer_id, s
        return s

    def _append(self, segment, writer_id, event_number, event_count, expected_length,
                request_id, head, body):
        _check_int(event_count, _I32_MIN, _I32_MAX, "event_count")
        if event_count <= 0:
            raise InvalidMessageError(
                f"Invalid eventCount : {event_count} in the append for Writer id: {writer_id}")
        s = self._session(segment, writer_id)
        if s is None:
            raise InvalidMessageError(
                f"Sending appends without setting up the append. Append Writer id: {writer_id}")
        _check_int(event_number, _I64_MIN, _I64_MAX, "event_number")
        if event_number <= s.last_event_number:
            raise InvalidMessageError(
                f"Events written out of order. Received: {event_number} following: "
                f"{s.last_event_number} for Writer id: {writer_id}")
        if expected_length is not None:
            raise ConditionalAppendError(
                "Conditional appends should be written via a ConditionalAppend object.")
        _check_int(request_id, _I64_MIN, _I64_MAX, "request_id")
        n = len(head) + _nbytes(body)
        if n > MAX_APPEND_SIZE:
            raise InvalidMessageError(
                f"append of {n} bytes exceeds the {MAX_APPEND_SIZE}-byte limit")

        tracker = None
        if self._trackers is not None:
            flow_id = request_id >> 32
            tracker = s.tracker
            if tracker is None or s.flow_id != flow_id or not tracker.live:
                tracker = s.tracker = self._trackers.tracker(flow_id)
                s.flow_id = flow_id
            tracker.record_append(event_number, n)

        owner = self._owner
        if owner is not None:
            # Frames must stay within the limits: close first what this append would overflow.
            if s.event_count + event_count > _I32_MAX or (
                    owner is not s and s.pending_bytes + n > _MAX_QUEUED_BLOCK):
                self._break_block()
                self._flush_queued()
                self._flush()
                owner = None
        if owner is None:
            size = (tracker.get_append_block_size() if tracker is not None
                    else self._fixed_block_size(request_id))
            s.last_event_number = event_number
            s.event_count += event_count
            self._start_block(s, n, size)
            self._write(head, body)
            self._bytes_left -= n
            if self._bytes_left == 0:
                self._complete_block(_EMPTY, _EMPTY)
                self._flush()
            return
        s.last_event_number = event_number
        s.event_count += event_count
        if owner is s:
            left = self._bytes_left
            if left > n:
                self._write(head, body)
                self._bytes_left = left - n
            else:
                buf = self._buf
                buf += _HEADER.pack(_PARTIAL_EVENT, left)
                h = len(head)
                if left <= h:
                    buf += head[:left]
                    self._complete_block(head[left:], body)
                else:
                    if h:
                        buf += head
                    with memoryview(body) as view:
                        buf += view[:left - h]
                        self._complete_block(_EMPTY, view[left - h:])
                self._flush_queued()
                self._flush()
        else:
            self._enqueue(s, head, body, n)

    def _write(self, head, body):
        buf = self._buf
        if head:
            buf += head
        buf += body

    def _fixed_block_size(self, request_id):
        size = self._size_fn(request_id >> 32)
        if type(size) is not int and (isinstance(size, bool) or not isinstance(size, int)):
            raise TypeError(f"block_size() must return an int, got {type(size).__name__}")
        return size

    def _start_block(self, s, n, size):
        size = min(max(size, 0), MAX_BLOCK_SIZE)
        self._owner = s
        if size > n:
            self._block_size = size
            self._buf += _BLOCK_HEADER.pack(_APPEND_BLOCK, 16 + size + 8, s.writer_bytes)
            self._token += 1
        else:
            self._block_size = n
            self._buf += _BLOCK_HEADER.pack(_APPEND_BLOCK, 16 + n, s.writer_bytes)
        self._bytes_left = self._block_size

    def _complete_block(self, tail_head, tail_body):
        s = self._owner
        tail = len(tail_head) + _nbytes(tail_body)
        buf = self._buf
        buf += _END_HEAD.pack(_APPEND_BLOCK_END, _END_FIXED + tail, s.writer_bytes,
                              self._block_size - self._bytes_left, tail)
        if tail:
            buf += tail_head
            buf += tail_body
        buf += _END_TAIL.pack(s.event_count, s.last_event_number, s.request_id)
        s.event_count = 0
        self._token += 1
        self._owner = None
        self._block_size = self._bytes_left = 0

    def _break_block(self):
        if self._owner is not None:
            left = self._bytes_left
            buf = self._buf
            buf += _HEADER.pack(_PADDING, left)
            buf += bytes(left)
            self._complete_block(_EMPTY, _EMPTY)

    def _enqueue(self, s, head, body, n):
        if not s.queued:
            s.queued = True
            self._queued.append(s)
        if n:
            if head:
                s.pending.append(head)
            # Keep the caller's bytes only if they cannot change under us.
            s.pending.append(body if type(body) is bytes else bytes(body))
            s.pending_bytes += n
        if s.pending_bytes > MAX_QUEUED_SIZE or s.event_count > MAX_QUEUED_EVENTS:
            self._break_block()
            self._flush_queued()
            self._flush()

    def _flush_queued(self):
        queued = self._queued
        if not queued:
            return
        self._queued = []
        buf = self._buf
        for s in queued:
            s.queued = False
            size = s.pending_bytes
            buf += _BLOCK_HEADER.pack(_APPEND_BLOCK, 16 + size, s.writer_bytes)
            for piece in s.pending:
                buf += piece
            buf += _END_HEAD.pack(_APPEND_BLOCK_END, _END_FIXED, s.writer_bytes, size, 0)
            buf += _END_TAIL.pack(s.event_count, s.last_event_number, s.request_id)
            s.pending = []
            s.pending_bytes = 0
            s.event_count = 0

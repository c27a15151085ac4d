# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True, binding=False
"""The sans-I/O append path, compiled twin of :mod:`pravega_wire._appends_py`.

Same classes, same behaviour, same bytes, same errors (see the pure module for the
documentation); the per-event work happens here in C. The output is one growing C buffer written
at an index: each event, with its 8-byte Event header built in place by
:meth:`CommandEncoder.append_event`, is copied into it once, and ``data_to_send()`` copies what
was released into the bytes it returns. Immutable payloads of 4 KiB or more skip the buffer: the
encoder keeps a reference and copies them once, straight into those bytes. The batch-size
arithmetic runs on C doubles with Java's semantics. The :class:`Append` record, the error
classes and the constants are the pure module's.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from cpython.long cimport PyLong_AsLongLong, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.math cimport INFINITY, NAN, copysign, fabs, sqrt
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from pravega_wire._codec cimport _encode as _c_encode

import time
import uuid as _uuid

from . import commands as C
from ._appends_py import (BASE_SIZE, BASE_TIME_NANOS, DEFAULT_FLOW_IDLE_EXPIRY_NS,
                          DEFAULT_MAX_FLOWS, MAX_APPEND_SIZE, MAX_BATCH_SIZE,
                          MAX_BATCH_TIME_MILLIS, MAX_BLOCK_SIZE, MAX_QUEUED_EVENTS,
                          MAX_QUEUED_SIZE, MAX_SESSIONS, OUTSTANDING_FRACTION, Append,
                          BatchSizeConstants, ConditionalAppendError, EncoderStateError,
                          _check_int, read_batch_size_env)
from ._appends_py import _MAX_QUEUED_BLOCK as _PY_MAX_QUEUED_BLOCK
from .codec import encode as _encode_command
from .codec import encode_event as _encode_event
from .errors import ConnectionClosedError, InvalidMessageError

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1

__all__ = [
    "IMPLEMENTATION", "Append", "AppendDecoder", "CommandEncoder", "AppendBatchSizeTracker",
    "FlowBatchSizeTrackers", "EncoderStateError", "ConditionalAppendError",
    "BatchSizeConstants", "read_batch_size_env",
    "MAX_QUEUED_EVENTS", "MAX_QUEUED_SIZE", "MAX_SESSIONS", "MAX_BATCH_TIME_MILLIS",
    "MAX_BATCH_SIZE", "BASE_TIME_NANOS", "BASE_SIZE", "OUTSTANDING_FRACTION", "MAX_APPEND_SIZE",
    "MAX_BLOCK_SIZE", "DEFAULT_MAX_FLOWS", "DEFAULT_FLOW_IDLE_EXPIRY_NS",
]

IMPLEMENTATION = "compiled"

cdef enum:
    I32_MAX = 2147483647
    I32_MIN = -2147483647 - 1

cdef object _I32_MIN = -(2 ** 31)
cdef object _I32_MAX = 2 ** 31 - 1
cdef object _I64_MIN = -(2 ** 63)
cdef object _I64_MAX = 2 ** 63 - 1

cdef Py_ssize_t _MAX_APPEND = MAX_APPEND_SIZE
cdef Py_ssize_t _MAX_BLOCK = MAX_BLOCK_SIZE
cdef Py_ssize_t _MAX_QUEUED_BLOCK = _PY_MAX_QUEUED_BLOCK
cdef Py_ssize_t _MAX_QUEUED_SIZE = MAX_QUEUED_SIZE
cdef int64_t _MAX_QUEUED_EVENTS = MAX_QUEUED_EVENTS
# The output buffer is reused; a drained buffer bigger than this is freed.
cdef Py_ssize_t _SHRINK_ABOVE = 4 * 1024 * 1024
# Immutable payload bytes of at least this size are not copied into the buffer: the encoder
# keeps a reference and copies them once, straight into the bytes data_to_send() returns.
cdef Py_ssize_t _REF_MIN = 4096

cdef int32_t _APPEND_BLOCK = C.AppendBlock.TYPE
cdef int32_t _APPEND_BLOCK_END = C.AppendBlockEnd.TYPE
cdef int32_t _PARTIAL_EVENT = C.PartialEvent.TYPE
cdef int32_t _PADDING = C.Padding.TYPE
cdef int _END_FIXED = 44

cdef double _NANOS_PER_MILLI = 1000000.0
cdef double _EVENT_SIZE_WEIGHT = 0.01
cdef double _NPA_WEIGHT = 0.001
cdef double _OUTSTANDING_WEIGHT = 0.001

cdef object _AppendBlock = C.AppendBlock
cdef object _AppendBlockEnd = C.AppendBlockEnd
cdef object _SetupAppend = C.SetupAppend
cdef object _Padding = C.Padding
cdef object _ConditionalAppend = C.ConditionalAppend
cdef object _ConditionalBlockEnd = C.ConditionalBlockEnd
cdef object _PartialEvent = C.PartialEvent
cdef object _Event = C.Event
cdef object _Hello = C.Hello
cdef object _Command = C.Command
cdef bytes _EMPTY = b""


# --------------------------------------------------------------------------------------------
# Helpers


cdef inline void _be32(char* p, int64_t v) noexcept nogil:
    cdef uint32_t u = <uint32_t>v
    p[0] = <char>(u >> 24)
    p[1] = <char>(u >> 16)
    p[2] = <char>(u >> 8)
    p[3] = <char>u


cdef inline void _be64(char* p, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    _be32(p, <int64_t>(u >> 32))
    _be32(p + 4, <int64_t>(u & 0xFFFFFFFFu))


cdef inline int32_t _rd32(const unsigned char* p) noexcept nogil:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8)
                     | <uint32_t>p[3])


cdef inline int64_t _to_i64(object value, str what) except? -1:
    """A Python int as int64, or the pure twin's InvalidMessageError."""
    cdef int overflow = 0
    cdef long long r
    if PyLong_CheckExact(value):
        r = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return r
    _check_int(value, _I64_MIN, _I64_MAX, what)  # raises for anything but an in-range int
    return PyLong_AsLongLong(value)


cdef inline int64_t _wrap_sub(int64_t a, int64_t b) noexcept nogil:
    return <int64_t>(<uint64_t>a - <uint64_t>b)


cdef inline double _java_div(double a, double b) noexcept nogil:
    if b == 0.0:
        if a != a or a == 0.0:
            return NAN
        return copysign(INFINITY, a) * copysign(1.0, b)
    return a / b


cdef inline double _java_max(double a, double b) noexcept nogil:
    if a != a or b != b:
        return NAN
    return a if a >= b else b


cdef inline double _java_min(double a, double b) noexcept nogil:
    if a != a or b != b:
        return NAN
    return a if a <= b else b


cdef inline int32_t _java_int(double x) noexcept nogil:
    if x != x:
        return 0
    if x >= 2147483647.0:
        return I32_MAX
    if x <= -2147483648.0:
        return I32_MIN
    return <int32_t>x


cdef inline double _sqrt_weighted(double x) noexcept nogil:
    if x == 0.0:
        return 0.0
    return copysign(sqrt(fabs(x)), x)


cdef object _UUID = _uuid.UUID
cdef object _tuple_new = tuple.__new__


cdef inline object _writer_key(object writer_id):
    """The dict key of a writer id: its 128-bit int for a UUID, the object itself otherwise."""
    if type(writer_id) is _UUID or isinstance(writer_id, _UUID):
        return writer_id.int
    return writer_id


cdef Py_ssize_t _nbytes(object data) except -1:
    if PyBytes_CheckExact(data):
        return PyBytes_GET_SIZE(data)
    if isinstance(data, memoryview):
        return data.nbytes
    return len(data)


cdef int64_t _event_count(object event_count, object writer_id) except -1:
    """The pure twin's checks of an event count; returns it when it is valid."""
    _check_int(event_count, _I32_MIN, _I32_MAX, "event_count")
    if event_count <= 0:
        raise InvalidMessageError(
            f"Invalid eventCount : {event_count} in the append for Writer id: {writer_id}")
    return event_count


cdef int _too_big(Py_ssize_t n) except -1:
    raise InvalidMessageError(f"append of {n} bytes exceeds the {MAX_APPEND_SIZE}-byte limit")


cdef int _get_buffer(object data, Py_buffer* view, str what) except -1:
    """A flat, contiguous byte view of ``data``, with the pure twin's errors."""
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except TypeError:
        raise InvalidMessageError(f"{what} must be bytes-like, got {type(data).__name__}") from None
    except BufferError:
        raise InvalidMessageError(f"{what} must be a contiguous buffer") from None
    return 0


# --------------------------------------------------------------------------------------------
# AppendBatchSizeTracker (§5.1)


cdef class AppendBatchSizeTracker:
    """Java's ``AppendBatchSizeTrackerImpl`` (see the pure twin for the details)."""

    cdef object _clock
    cdef int64_t _last_append_number, _last_ack_number, _last_append_time, _last_ack_time
    cdef double _event_size, _npa, _outstanding, _outstanding_fraction
    cdef int32_t _max_batch_size, _base_time_nanos, _base_size
    cdef public bint live

    def __init__(self, clock=time.monotonic_ns, *, max_batch_size=MAX_BATCH_SIZE,
                 base_time_nanos=BASE_TIME_NANOS, base_size=BASE_SIZE,
                 outstanding_fraction=OUTSTANDING_FRACTION):
        if not callable(clock):
            raise TypeError("clock must be a callable returning nanoseconds")
        self._max_batch_size = _check_int(max_batch_size, 0, _I32_MAX, "max_batch_size")
        self._base_time_nanos = _check_int(base_time_nanos, _I32_MIN, _I32_MAX, "base_time_nanos")
        self._base_size = _check_int(base_size, _I32_MIN, _I32_MAX, "base_size")
        self._outstanding_fraction = float(outstanding_fraction)
        self._clock = clock
        cdef int64_t now = _to_i64(clock(), "clock()")
        self._last_append_time = now
        self._last_ack_time = now
        self._last_append_number = 0
        self._last_ack_number = 0
        self._event_size = sqrt(1024.0)
        self._npa = 10.0 * _NANOS_PER_MILLI
        self._outstanding = 20.0
        self.live = True

    cdef int _record_append(self, int64_t event_number, int64_t size) except -1:
        cdef int64_t now = _to_i64(self._clock(), "clock()")
        if now < self._last_append_time:
            now = self._last_append_time
        cdef int64_t gap = now - self._last_append_time
        self._last_append_time = now
        self._last_append_number = event_number
        self._npa = _NPA_WEIGHT * <double>gap + (1.0 - _NPA_WEIGHT) * self._npa
        self._event_size = (_EVENT_SIZE_WEIGHT * _sqrt_weighted(<double>size)
                            + (1.0 - _EVENT_SIZE_WEIGHT) * self._event_size)
        return 0

    cdef int64_t _record_ack(self, int64_t event_number) except? -1:
        cdef int64_t now = _to_i64(self._clock(), "clock()")
        if now > self._last_ack_time:
            self._last_ack_time = now
        self._last_ack_number = event_number
        cdef int64_t outstanding = _wrap_sub(self._last_append_number, event_number)
        self._outstanding = (_OUTSTANDING_WEIGHT * <double>outstanding
                             + (1.0 - _OUTSTANDING_WEIGHT) * self._outstanding)
        return outstanding

    cdef int32_t _block_size(self) noexcept:
        if _wrap_sub(self._last_append_number, self._last_ack_number) <= 1:
            return 0
        cdef double npa = self._npa
        cdef double max_appends = _java_max(1.0, _java_div(MAX_BATCH_TIME_MILLIS * _NANOS_PER_MILLI,
                                                           npa))
        cdef double extra = _java_max(0.0, _java_div(<double>self._base_time_nanos, npa))
        cdef double appends = _java_max(
            _java_min(self._outstanding * self._outstanding_fraction + extra, max_appends), 1.0)
        cdef double event_size = self._event_size * fabs(self._event_size)
        cdef int32_t size = <int32_t>(<uint32_t>_java_int(appends * event_size)
                                      + <uint32_t>self._base_size)
        if size > self._max_batch_size:
            size = self._max_batch_size
        if size < 0:
            size = 0
        return size

    def record_append(self, event_number, size):
        """Note an append of ``size`` bytes (Event headers included) numbered ``event_number``."""
        cdef int64_t ev = _to_i64(event_number, "event_number")
        _check_int(size, 0, _I32_MAX, "size")
        self._record_append(ev, size)

    def record_ack(self, event_number):
        """Note an acknowledgement up to ``event_number``; returns the appends outstanding."""
        return self._record_ack(_to_i64(event_number, "event_number"))

    def get_append_block_size(self):
        """The block size for the next block (0: do not batch)."""
        return self._block_size()

    def get_batch_timeout(self):
        """The batch window in milliseconds (20)."""
        return MAX_BATCH_TIME_MILLIS

    @property
    def last_used(self):
        """Clock time (ns) of the latest append or ack recorded (or of the creation)."""
        return max(self._last_append_time, self._last_ack_time)

    def __repr__(self):
        return (f"AppendBatchSizeTracker(last_append={self._last_append_number}, "
                f"last_ack={self._last_ack_number}, block_size={self._block_size()})")


# --------------------------------------------------------------------------------------------
# FlowBatchSizeTrackers (§5.2)


cdef class FlowBatchSizeTrackers:
    """One tracker per flow, bounded in size and idle time (see the pure twin)."""

    cdef object _clock
    cdef dict _trackers
    cdef int64_t _max_flows, _idle_expiry_ns, _last_sweep
    cdef dict _tracker_args
    cdef AppendBatchSizeTracker _latest

    def __init__(self, clock=time.monotonic_ns, *, max_flows=DEFAULT_MAX_FLOWS,
                 idle_expiry_ns=DEFAULT_FLOW_IDLE_EXPIRY_NS, **tracker_args):
        if not callable(clock):
            raise TypeError("clock must be a callable returning nanoseconds")
        self._max_flows = _check_int(max_flows, 1, _I32_MAX, "max_flows")
        self._idle_expiry_ns = _check_int(idle_expiry_ns, 1, _I64_MAX, "idle_expiry_ns")
        self._clock = clock
        self._trackers = {}
        self._last_sweep = _to_i64(clock(), "clock()")
        AppendBatchSizeTracker(clock, **tracker_args)  # validates the arguments now
        self._tracker_args = tracker_args

    cpdef AppendBatchSizeTracker tracker(self, flow_id):
        """The tracker of ``flow_id``, created if the flow has none (starting from the
        estimates of the tracker made before it, Java's defaults for the first)."""
        cdef AppendBatchSizeTracker t = self._trackers.get(flow_id)
        cdef AppendBatchSizeTracker latest = self._latest
        cdef int64_t now
        if t is None:
            _check_int(flow_id, _I32_MIN, _I32_MAX, "flow_id")
            now = _to_i64(self._clock(), "clock()")
            if (len(self._trackers) >= self._max_flows
                    or now - self._last_sweep >= self._idle_expiry_ns // 2):
                self._sweep(now, True)
            t = AppendBatchSizeTracker(self._clock, **self._tracker_args)
            if latest is not None:
                t._event_size = latest._event_size
                t._npa = latest._npa
                t._outstanding = latest._outstanding
            self._trackers[flow_id] = t
            self._latest = t
        return t

    def get(self, flow_id):
        """The tracker of ``flow_id`` if the map holds one, else None (nothing is created)."""
        return self._trackers.get(flow_id)

    cpdef bint discard(self, flow_id):
        """Drop the tracker of ``flow_id`` (see the pure twin); returns whether there was one."""
        cdef AppendBatchSizeTracker t = self._trackers.pop(flow_id, None)
        if t is None:
            return False
        t.live = False
        return True

    def expire(self):
        """Drop the idle entries now; returns how many were dropped."""
        cdef Py_ssize_t before = len(self._trackers)
        self._sweep(_to_i64(self._clock(), "clock()"), False)
        return before - len(self._trackers)

    cdef _sweep(self, int64_t now, bint evict):
        cdef AppendBatchSizeTracker t
        cdef Py_ssize_t keep
        self._last_sweep = now
        trackers = self._trackers
        for flow_id, t in list(trackers.items()):
            if now - max(t._last_append_time, t._last_ack_time) > self._idle_expiry_ns:
                t.live = False
                del trackers[flow_id]
        if evict and len(trackers) >= self._max_flows:
            keep = self._max_flows - max(1, self._max_flows // 10)
            by_age = sorted(trackers.items(), key=lambda item: item[1].last_used)
            for flow_id, t in by_age[:len(trackers) - keep]:
                t.live = False
                del trackers[flow_id]

    def __len__(self):
        return len(self._trackers)

    def __contains__(self, flow_id):
        return flow_id in self._trackers

    @property
    def max_flows(self):
        return self._max_flows

    @property
    def idle_expiry_ns(self):
        return self._idle_expiry_ns


# --------------------------------------------------------------------------------------------
# AppendDecoder (server side, §4.6)


cdef class _Writer:
    cdef object segment
    cdef int64_t last_event_number

    def __cinit__(self, segment):
        self.segment = segment
        self.last_event_number = 0


cdef class AppendDecoder:
    """Server side of the append path (see the pure twin for the details)."""

    cdef dict _writers
    cdef object _block
    cdef object _error

    def __init__(self):
        self._writers = {}
        self._block = None
        self._error = None

    def segment_of(self, writer_id):
        """The segment ``writer_id`` was set up for on this connection, or None."""
        cdef _Writer w = self._writers.get(_writer_key(writer_id))
        return None if w is None else w.segment

    def last_event_number(self, writer_id):
        """The last event number seen from ``writer_id`` (0 after its SetupAppend), or None."""
        cdef _Writer w = self._writers.get(_writer_key(writer_id))
        return None if w is None else w.last_event_number

    def forget_writer(self, writer_id):
        """Drop ``writer_id``'s state; returns whether the writer was known."""
        return self._writers.pop(_writer_key(writer_id), None) is not None

    @property
    def writer_count(self):
        """How many writers are set up on this connection."""
        return len(self._writers)

    @property
    def in_block(self):
        """True while an AppendBlock waits for its AppendBlockEnd."""
        return self._block is not None

    def process(self, cmd):
        """What the decoder emits for ``cmd``."""
        if self._error is not None:
            raise InvalidMessageError(f"append decoder failed earlier: {self._error}")
        try:
            return self._process(cmd)
        except InvalidMessageError as e:
            self._error = e.args[0]
            self._block = None
            raise

    cdef _Writer _writer(self, writer_id):
        cdef _Writer w = self._writers.get(_writer_key(writer_id))
        if w is None:
            raise InvalidMessageError(f"writer {writer_id} referenced before SetupAppend")
        return w

    cdef list _process(self, cmd):
        cdef object t = type(cmd)
        cdef _Writer w
        if self._block is not None and t is not _AppendBlockEnd:
            raise InvalidMessageError(
                f"Unexpected {t.__name__} following an append block (only AppendBlockEnd may "
                f"follow AppendBlock)")
        if t is _AppendBlockEnd:
            return [self._block_end(<tuple>cmd)]
        if t is _AppendBlock:
            self._writer((<tuple>cmd)[0])  # writer_id
            self._block = cmd
            return []
        if t is _SetupAppend:
            self._writers[_writer_key(cmd.writer_id)] = _Writer(cmd.segment)
            return [cmd]
        if t is _Padding:
            return []
        if t is _ConditionalAppend or t is _ConditionalBlockEnd:
            w = self._writer(cmd.writer_id)
            if cmd.event_number < w.last_event_number:
                raise InvalidMessageError(
                    f"Last event number went backwards: {t.__name__} event number "
                    f"{cmd.event_number} after {w.last_event_number} for writer "
                    f"{cmd.writer_id} and segment {w.segment!r}")
            w.last_event_number = cmd.event_number
            data = _encode_event(cmd.event.data) if t is _ConditionalAppend else cmd.data
            return [_tuple_new(Append, (w.segment, cmd.writer_id, cmd.event_number, 1, data,
                                        cmd.expected_offset, cmd.request_id))]
        if t is _PartialEvent or t is _Event or not isinstance(cmd, _Command):
            raise InvalidMessageError(
                f"{t.__name__} is not a command a client may send at top level")
        return [cmd]

    cdef object _block_end(self, tuple end):
        # AppendBlockEnd fields: writer_id, size_of_whole_events, data, num_events,
        # last_event_number, request_id
        writer_id = end[0]
        cdef _Writer w = self._writer(writer_id)
        num_events = end[3]
        if num_events <= 0:
            raise InvalidMessageError(
                f"Invalid number of events in block. numEvents : {num_events}")
        last = end[4]
        if last < w.last_event_number:
            raise InvalidMessageError(
                f"Last event number went backwards, Segment last Event number : "
                f"{w.last_event_number} , Append block End Event number : "
                f"{last}, for writer ID: {writer_id} and Segment Name: "
                f"{w.segment}")
        block = self._block
        if block is None:
            data = end[2]
        else:
            block_writer = (<tuple>block)[0]
            if block_writer != writer_id:
                raise InvalidMessageError(
                    f"Writer ID mismatch between Append Block and Append block End, Append "
                    f"block Writer ID : {block_writer}, Append block End Writer ID: "
                    f"{writer_id}")
            data = _block_data((<tuple>block)[1], end[1], end[2])
            self._block = None
        w.last_event_number = last
        return _tuple_new(Append, (w.segment, writer_id, last, num_events, data, None, end[5]))


cdef object _block_data(object block_data, object whole_obj, object end_data):
    cdef Py_buffer view
    cdef Py_ssize_t size, whole, remaining, start
    cdef int32_t type_code, length
    cdef Py_ssize_t end_len = _nbytes(end_data)
    _get_buffer(block_data, &view, "AppendBlock.data")
    try:
        size = view.len
        if whole_obj < 0 or whole_obj > size:
            raise InvalidMessageError(
                f"Invalid SizeOfWholeEvents in block : {whole_obj}, Append block data bytes : "
                f"{size}")
        whole = <Py_ssize_t>whole_obj
        remaining = size - whole
        if remaining == 0:
            if end_len:
                raise InvalidMessageError(
                    f"AppendBlockEnd carries {end_len} data bytes but its block ends with no "
                    f"PartialEvent to continue (Java's segment store would drop them)")
            return block_data
        if remaining < 8:
            raise InvalidMessageError(
                f"{remaining} bytes after the whole events of an append block: not enough for "
                f"a PartialEvent or Padding header")
        type_code = _rd32(<const unsigned char*>view.buf + whole)
        length = _rd32(<const unsigned char*>view.buf + whole + 4)
        if length < 0:
            raise InvalidMessageError(f"negative length {length} in the sub-frame ending an "
                                      f"append block")
        if length > remaining - 8:
            raise InvalidMessageError(
                f"the sub-frame ending an append block announces {length} bytes but only "
                f"{remaining - 8} remain")
        if type_code == _PADDING:
            if end_len:
                raise InvalidMessageError("Unexpected data in BlockEnd (after a Padding)")
            if PyBytes_CheckExact(block_data):
                return PyBytes_FromStringAndSize(<char*>view.buf, whole)
            return memoryview(block_data).cast("B")[:whole]
        if type_code != _PARTIAL_EVENT:
            cls = C.COMMAND_TYPES.get(type_code)
            found = cls.__name__ if cls is not None else f"unknown wire command {type_code}"
            raise InvalidMessageError(
                f"Found {found} at end of append block but was expecting a partialEvent or "
                f"padding.")
        start = whole + 8
        return _join3(<char*>view.buf, whole, <char*>view.buf + start, length, end_data, end_len)
    finally:
        PyBuffer_Release(&view)


cdef bytes _join3(const char* a, Py_ssize_t na, const char* b, Py_ssize_t nb, object c,
                  Py_ssize_t nc):
    cdef Py_buffer cv
    cdef bytes out = PyBytes_FromStringAndSize(NULL, na + nb + nc)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, a, na)
    memcpy(p + na, b, nb)
    if nc:
        _get_buffer(c, &cv, "AppendBlockEnd.data")
        try:
            memcpy(p + na + nb, cv.buf, nc)
        finally:
            PyBuffer_Release(&cv)
    return out


# --------------------------------------------------------------------------------------------
# CommandEncoder (client side, §4.2–4.5)


cdef class _Session:
    cdef object writer_id, segment
    cdef char wbytes[16]
    cdef int64_t request_id, last_event_number, event_count
    cdef list pending
    cdef Py_ssize_t pending_bytes
    cdef bint queued, has_flow
    cdef int64_t flow_id
    cdef AppendBatchSizeTracker tracker

    def __cinit__(self, writer_id, segment, request_id):
        cdef bytes raw = writer_id.bytes
        memcpy(self.wbytes, PyBytes_AS_STRING(raw), 16)
        self.writer_id = writer_id
        self.segment = segment
        self.request_id = request_id
        self.last_event_number = -1
        self.event_count = 0
        self.pending = []
        self.pending_bytes = 0
        self.queued = False
        self.has_flow = False
        self.tracker = None


cdef class CommandEncoder:
    """The client's encoder for one connection (see the pure twin for the details).

    ``trackers``, if given, must be this twin's :class:`FlowBatchSizeTrackers`.
    """

    # The output: _buf holds _len bytes, the first _flushed of them released. Large immutable
    # payloads are not copied in: _refs lists (position in _buf, bytes, offset, length) for
    # each, to be inserted at that position; the first _refs_flushed are released.
    cdef char* _buf
    cdef Py_ssize_t _cap, _len, _flushed
    cdef list _refs
    cdef Py_ssize_t _refs_flushed, _ref_bytes, _ref_bytes_flushed
    cdef dict _sessions
    cdef dict _writer_segments
    cdef list _queued
    cdef _Session _owner
    cdef Py_ssize_t _block_size, _bytes_left
    cdef int64_t _token
    cdef bint _closed
    cdef Py_ssize_t _max_sessions
    cdef object _size_fn
    cdef FlowBatchSizeTrackers _trackers
    cdef object _last_segment, _last_writer
    cdef _Session _last_session

    def __cinit__(self):
        self._buf = NULL
        self._cap = self._len = self._flushed = 0
        self._refs = []
        self._refs_flushed = self._ref_bytes = self._ref_bytes_flushed = 0

    def __init__(self, block_size=None, *, clock=time.monotonic_ns, trackers=None,
                 max_sessions=MAX_SESSIONS):
        if block_size is None:
            self._trackers = trackers if trackers is not None else FlowBatchSizeTrackers(clock)
            self._size_fn = None
        else:
            if trackers is not None:
                raise TypeError("trackers are only used with block_size=None")
            if isinstance(block_size, int) and not isinstance(block_size, bool):
                constant = block_size
                block_size = lambda flow_id: constant
            elif not callable(block_size):
                raise TypeError("block_size must be None, a callable flow_id -> int, or an int")
            self._size_fn = block_size
            self._trackers = None
        self._max_sessions = _check_int(max_sessions, 1, _I32_MAX, "max_sessions")
        self._sessions = {}
        self._writer_segments = {}
        self._queued = []
        self._owner = None
        self._block_size = self._bytes_left = 0
        self._token = 0
        self._closed = False
        self._last_segment = self._last_writer = self._last_session = None

    # -- state -------------------------------------------------------------------------------

    @property
    def buffered(self):
        """Bytes encoded but not yet released for sending: an open block's, which stay in
        the encoder until the block completes (``buffered_after`` in the Java vectors)."""
        return self._len - self._flushed + self._ref_bytes - self._ref_bytes_flushed

    @property
    def pending(self):
        """Bytes released for sending and not yet drained by :meth:`data_to_send`."""
        return self._flushed + self._ref_bytes_flushed

    @property
    def closed(self):
        """True once the session cap closed the encoder."""
        return self._closed

    @property
    def session_count(self):
        """Live append sessions (set up and not closed)."""
        return len(self._sessions)

    @property
    def block_open(self):
        """True while a block is open (its bytes held back)."""
        return self._owner is not None

    @property
    def trackers(self):
        """The :class:`FlowBatchSizeTrackers` (None with a fixed ``block_size``)."""
        return self._trackers

    # -- the output buffer -------------------------------------------------------------------

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self._len + extra
        cdef Py_ssize_t cap
        cdef char* p
        if need <= self._cap:
            return 0
        cap = self._cap * 2
        if cap < need:
            cap = need
        if cap < 4096:
            cap = 4096
        p = <char*>PyMem_Realloc(self._buf, <size_t>cap)
        if p == NULL:
            raise MemoryError()
        self._buf = p
        self._cap = cap
        return 0

    cdef inline int _put(self, const char* data, Py_ssize_t n) except -1:
        if self._len + n > self._cap:
            self._reserve(n)
        if n:
            memcpy(self._buf + self._len, data, <size_t>n)
            self._len += n
        return 0

    cdef inline int _put_bytes(self, bytes data) except -1:
        return self._put(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef inline int _put_body(self, object obj, const char* data, Py_ssize_t n) except -1:
        """Add payload bytes ``data[:n]`` (which lie inside ``obj``): by reference when ``obj``
        is an immutable bytes object and ``n`` is large, else copied."""
        if n >= _REF_MIN and PyBytes_CheckExact(obj):
            self._refs.append((self._len, obj, data - PyBytes_AS_STRING(obj), n))
            self._ref_bytes += n
            return 0
        return self._put(data, n)

    cdef inline void _flush(self) noexcept:
        self._flushed = self._len
        self._refs_flushed = len(self._refs)
        self._ref_bytes_flushed = self._ref_bytes

    def data_to_send(self):
        """Everything released for the socket since the last call (b"" if nothing)."""
        cdef Py_ssize_t n = self._flushed
        cdef Py_ssize_t k = self._refs_flushed
        cdef Py_ssize_t prev = 0, pos, offset, length, i
        cdef char* dst
        cdef bytes out
        if not n and not k:
            return _EMPTY
        if k:
            out = PyBytes_FromStringAndSize(NULL, n + self._ref_bytes_flushed)
            dst = PyBytes_AS_STRING(out)
            for i in range(k):
                pos, obj, offset, length = self._refs[i]
                memcpy(dst, self._buf + prev, <size_t>(pos - prev))
                dst += pos - prev
                memcpy(dst, PyBytes_AS_STRING(obj) + offset, <size_t>length)
                dst += length
                prev = pos
            memcpy(dst, self._buf + prev, <size_t>(n - prev))
            self._ref_bytes -= self._ref_bytes_flushed
            self._refs_flushed = self._ref_bytes_flushed = 0
        else:
            out = PyBytes_FromStringAndSize(self._buf, n)
        if len(self._refs) > k:  # an open block's references: they move with its bytes
            self._refs = [(pos - n, obj, offset, length)
                          for pos, obj, offset, length in self._refs[k:]]
        elif k:
            self._refs = []
        if n < self._len:
            memmove(self._buf, self._buf + n, <size_t>(self._len - n))
        self._len -= n
        self._flushed = 0
        if self._len == 0 and self._cap > _SHRINK_ABOVE:
            PyMem_Free(self._buf)
            self._buf = NULL
            self._cap = 0
        return out

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ConnectionClosedError(
                "the encoder was closed: too many append sessions on this connection")
        return 0

    # -- commands ------------------------------------------------------------------------------

    def write_command(self, cmd):
        """Frame ``cmd`` and release it for sending, closing the open block and flushing the
        queued writers first (a Hello is refused while a block is open)."""
        self._check_open()
        t = type(cmd)
        # (identity tests: ``in`` a tuple of classes compares them with ==, which is slower)
        if t is _AppendBlock or t is _AppendBlockEnd or t is _PartialEvent or t is _Event:
            raise InvalidMessageError(
                f"{t.__name__} is part of the append framing: use append() instead")
        # The compiled codec's C entry first (no Python call); None leaves ``cmd`` (an unusual
        # value, a command with lists, or no command at all) to the codec's full path.
        cdef bytes frame = _c_encode(cmd, False)
        if frame is None:
            if not isinstance(cmd, _Command):
                raise InvalidMessageError(f"not a WireCommand: {type(cmd).__name__}")
            frame = _encode_command(cmd)
        if t is _Hello:
            if self._owner is not None or self._queued:
                raise EncoderStateError("Hello may not be written while an append block is open")
            self._put_bytes(frame)
            self._flush()
            return
        if t is _SetupAppend:
            wkey = _writer_key(cmd.writer_id)
            other = self._writer_segments.get(wkey)
            if other is not None and other != cmd.segment:
                raise InvalidMessageError(
                    f"writer {cmd.writer_id} is already set up for segment {other!r} on this "
                    f"connection, and the server maps a writer id to one segment: close that "
                    f"session first")
        self._break_block()
        self._flush_queued()
        if t is _SetupAppend:
            key = (cmd.segment, wkey)
            if key not in self._sessions and len(self._sessions) >= self._max_sessions:
                self._flush()
                self._closed = True
                raise ConnectionClosedError(
                    f"closed due to memory limit: {len(self._sessions)} append sessions are "
                    f"set up on this connection (the limit is {self._max_sessions})")
            self._put_bytes(frame)
            self._sessions[key] = _Session(cmd.writer_id, cmd.segment, cmd.request_id)
            self._writer_segments[wkey] = cmd.segment
            self._last_session = self._last_segment = self._last_writer = None
        else:
            self._put_bytes(frame)
        self._flush()

    def close_session(self, segment, writer_id):
        """Forget the session of (``segment``, ``writer_id``); returns whether it existed."""
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
        cdef _Session session = s
        if session.tracker is not None and session.has_flow and self._trackers is not None:
            self._trackers.discard(session.flow_id)  # (another session of that flow gets a new one)
        return True

    def batch_timeout(self, token):
        """The batch timer's tick; returns the token to pass next time (start with -1)."""
        self._check_open()
        current = self._token
        if current == token:
            self._break_block()
            self._flush_queued()
            self._flush()
        return current

    def record_ack(self, request_id, event_number):
        """Feed a DataAppended to its flow's tracker; returns the appends outstanding on that
        flow, or None if no tracker follows it."""
        cdef int64_t rid = _to_i64(request_id, "request_id")
        cdef int64_t ev = _to_i64(event_number, "event_number")
        cdef AppendBatchSizeTracker t
        if self._trackers is None:
            return None
        t = self._trackers._trackers.get(rid >> 32)
        if t is None:
            return None
        return t._record_ack(ev)

    # -- appends -------------------------------------------------------------------------------

    def append(self, append):
        """Add ``append`` (an :class:`Append`; its ``data`` is sent as is)."""
        cdef Py_buffer view
        cdef int64_t count = 0
        cdef int overflow = 0
        if type(append) is not Append:
            raise InvalidMessageError(f"expected an Append, got {type(append).__name__}")
        cdef tuple a = <tuple>append
        self._check_open()
        data = a[4]
        if not PyBytes_CheckExact(data):
            _get_buffer(data, &view, "Append.data")
            try:
                self._append_any(a, &view)
            finally:
                PyBuffer_Release(&view)
            return
        event_count = a[3]
        if PyLong_CheckExact(event_count):
            count = PyLong_AsLongLongAndOverflow(event_count, &overflow)
        if overflow or not (0 < count <= I32_MAX):
            count = _event_count(event_count, a[1])
        self._validate(a[0], a[1], a[2], count, a[5], a[6], NULL, 0, data,
                       PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int _append_any(self, tuple a, Py_buffer* view) except -1:
        return self._validate(a[0], a[1], a[2], _event_count(a[3], a[1]), a[5], a[6], NULL, 0,
                              a[4], <const char*>view.buf, view.len)

    def append_event(self, segment, writer_id, event_number, payload, request_id):
        """Add one event: ``payload`` framed as an Event record (its 8-byte header built in
        place), event count 1."""
        cdef Py_buffer view
        cdef char head[8]
        cdef Py_ssize_t n
        if self._closed:
            self._check_open()
        if PyBytes_CheckExact(payload):
            n = PyBytes_GET_SIZE(payload)
            if n > _MAX_APPEND - 8:
                _too_big(n + 8)
            _be32(head, 0)
            _be32(head + 4, n)
            self._validate(segment, writer_id, event_number, 1, None, request_id, head, 8,
                           payload, PyBytes_AS_STRING(payload), n)
            return
        _get_buffer(payload, &view, "payload")
        try:
            n = view.len
            if n > _MAX_APPEND - 8:
                _too_big(n + 8)
            _be32(head, 0)
            _be32(head + 4, n)
            self._validate(segment, writer_id, event_number, 1, None, request_id, head, 8,
                           payload, <const char*>view.buf, n)
        finally:
            PyBuffer_Release(&view)

    cdef inline _Session _session(self, segment, writer_id):
        if segment is self._last_segment and writer_id is self._last_writer:
            return self._last_session
        return self._lookup(segment, writer_id)

    cdef _Session _lookup(self, segment, writer_id):
        cdef _Session s
        try:
            s = self._sessions.get((segment, _writer_key(writer_id)))
        except TypeError:  # an unhashable segment or writer id
            s = None
        if s is not None:
            self._last_segment = segment
            self._last_writer = writer_id
            self._last_session = s
        return s

    cdef int _validate(self, segment, writer_id, event_number, int64_t count, expected_length,
                       request_id, const char* head, Py_ssize_t hlen, object body_obj,
                       const char* body, Py_ssize_t blen) except -1:
        """Java's checks, in Java's order (the event count was checked), then the limits."""
        cdef int64_t ev, rid
        cdef _Session s = self._session(segment, writer_id)
        if s is None:
            raise InvalidMessageError(
                f"Sending appends without setting up the append. Append Writer id: {writer_id}")
        ev = _to_i64(event_number, "event_number")
        if ev <= s.last_event_number:
            raise InvalidMessageError(
                f"Events written out of order. Received: {ev} following: "
                f"{s.last_event_number} for Writer id: {writer_id}")
        if expected_length is not None:
            raise ConditionalAppendError(
                "Conditional appends should be written via a ConditionalAppend object.")
        rid = _to_i64(request_id, "request_id")
        if hlen + blen > _MAX_APPEND:
            _too_big(hlen + blen)
        return self._append(s, ev, count, rid, head, hlen, body_obj, body, blen)

    cdef int _append(self, _Session s, int64_t event_number, int64_t event_count,
                     int64_t request_id, const char* head, Py_ssize_t hlen, object body_obj,
                     const char* body, Py_ssize_t blen) except -1:
        cdef Py_ssize_t n = hlen + blen
        cdef Py_ssize_t left, size
        cdef int64_t flow_id
        cdef AppendBatchSizeTracker tracker = None
        cdef _Session owner
        if self._trackers is not None:
            flow_id = request_id >> 32
            tracker = s.tracker
            if tracker is None or not s.has_flow or s.flow_id != flow_id or not tracker.live:
                tracker = self._trackers.tracker(flow_id)
                s.tracker = tracker
                s.flow_id = flow_id
                s.has_flow = True
            tracker._record_append(event_number, n)

        owner = self._owner
        if owner is not None:
            # Frames must stay within the limits: close first what this append would overflow.
            if s.event_count + event_count > I32_MAX or (
                    owner is not s and s.pending_bytes + n > _MAX_QUEUED_BLOCK):
                self._break_block()
                self._flush_queued()
                self._flush()
                owner = None
        if owner is None:
            if tracker is not None:
                size = tracker._block_size()
            else:
                size = self._fixed_block_size(request_id)
            s.last_event_number = event_number
            s.event_count += event_count
            self._start_block(s, n, size)
            self._put(head, hlen)
            self._put_body(body_obj, body, blen)
            self._bytes_left -= n
            if self._bytes_left == 0:
                self._complete_block(NULL, 0, None, NULL, 0)
                self._flush()
            return 0
        s.last_event_number = event_number
        s.event_count += event_count
        if owner is s:
            left = self._bytes_left
            if left > n:
                if self._len + n > self._cap:
                    self._reserve(n)
                if hlen:
                    memcpy(self._buf + self._len, head, <size_t>hlen)
                    self._len += hlen
                self._put_body(body_obj, body, blen)
                self._bytes_left = left - n
                return 0
            self._reserve(8 + left)
            _be32(self._buf + self._len, _PARTIAL_EVENT)
            _be32(self._buf + self._len + 4, left)
            self._len += 8
            if left <= hlen:
                self._put(head, left)
                self._complete_block(head + left, hlen - left, body_obj, body, blen)
            else:
                self._put(head, hlen)
                self._put_body(body_obj, body, left - hlen)
                self._complete_block(NULL, 0, body_obj, body + (left - hlen),
                                     blen - (left - hlen))
            self._flush_queued()
            self._flush()
            return 0
        return self._enqueue(s, head, hlen, body_obj, body, blen)

    cdef Py_ssize_t _fixed_block_size(self, int64_t request_id) except? -1:
        size = self._size_fn(request_id >> 32)
        if type(size) is not int and (isinstance(size, bool) or not isinstance(size, int)):
            raise TypeError(f"block_size() must return an int, got {type(size).__name__}")
        if size < 0:
            return 0
        if size > _MAX_BLOCK:
            return _MAX_BLOCK
        return size

    cdef int _start_block(self, _Session s, Py_ssize_t n, Py_ssize_t size) except -1:
        cdef char* p
        if size < 0:
            size = 0
        elif size > _MAX_BLOCK:
            size = _MAX_BLOCK
        self._owner = s
        self._reserve(24)
        p = self._buf + self._len
        _be32(p, _APPEND_BLOCK)
        if size > n:
            self._block_size = size
            _be32(p + 4, 16 + size + 8)
            self._token += 1
        else:
            self._block_size = n
            _be32(p + 4, 16 + n)
        memcpy(p + 8, s.wbytes, 16)
        self._len += 24
        self._bytes_left = self._block_size
        return 0

    cdef int _complete_block(self, const char* t1, Py_ssize_t n1, object t2_obj,
                             const char* t2, Py_ssize_t n2) except -1:
        """Write the AppendBlockEnd of the open block; its data is ``t1[:n1]`` then ``t2[:n2]``
        (``t2`` lies inside ``t2_obj``)."""
        cdef _Session s = self._owner
        cdef Py_ssize_t tail = n1 + n2
        cdef char* p
        self._reserve(32 + n1)
        p = self._buf + self._len
        _be32(p, _APPEND_BLOCK_END)
        _be32(p + 4, _END_FIXED + tail)
        memcpy(p + 8, s.wbytes, 16)
        _be32(p + 24, self._block_size - self._bytes_left)
        _be32(p + 28, tail)
        if n1:
            memcpy(p + 32, t1, <size_t>n1)
        self._len += 32 + n1
        if n2:
            self._put_body(t2_obj, t2, n2)
        self._reserve(20)
        p = self._buf + self._len
        _be32(p, s.event_count)
        _be64(p + 4, s.last_event_number)
        _be64(p + 12, s.request_id)
        self._len += 20
        s.event_count = 0
        self._token += 1
        self._owner = None
        self._block_size = self._bytes_left = 0
        return 0

    cdef int _break_block(self) except -1:
        cdef Py_ssize_t left
        if self._owner is not None:
            left = self._bytes_left
            self._reserve(8 + left)
            _be32(self._buf + self._len, _PADDING)
            _be32(self._buf + self._len + 4, left)
            memset(self._buf + self._len + 8, 0, <size_t>left)
            self._len += 8 + left
            self._complete_block(NULL, 0, None, NULL, 0)
        return 0

    cdef int _enqueue(self, _Session s, const char* head, Py_ssize_t hlen, object body_obj,
                      const char* body, Py_ssize_t blen) except -1:
        if not s.queued:
            s.queued = True
            self._queued.append(s)
        if hlen + blen:
            if hlen:
                s.pending.append(PyBytes_FromStringAndSize(head, hlen))
            # Keep the caller's bytes only if they cannot change under us.
            s.pending.append(body_obj if PyBytes_CheckExact(body_obj)
                             else PyBytes_FromStringAndSize(body, blen))
            s.pending_bytes += hlen + blen
        if s.pending_bytes > _MAX_QUEUED_SIZE or s.event_count > _MAX_QUEUED_EVENTS:
            self._break_block()
            self._flush_queued()
            self._flush()
        return 0

    cdef int _flush_queued(self) except -1:
        cdef _Session s
        cdef bytes piece
        cdef Py_ssize_t size
        cdef char* p
        if not self._queued:
            return 0
        queued = self._queued
        self._queued = []
        for s in queued:
            s.queued = False
            size = s.pending_bytes
            self._reserve(24)
            p = self._buf + self._len
            _be32(p, _APPEND_BLOCK)
            _be32(p + 4, 16 + size)
            memcpy(p + 8, s.wbytes, 16)
            self._len += 24
            for piece in s.pending:
                self._put_body(piece, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece))
            self._reserve(52)
            p = self._buf + self._len
            _be32(p, _APPEND_BLOCK_END)
            _be32(p + 4, _END_FIXED)
            memcpy(p + 8, s.wbytes, 16)
            _be32(p + 24, size)
            _be32(p + 28, 0)
            _be32(p + 32, s.event_count)
            _be64(p + 36, s.last_event_number)
            _be64(p + 44, s.request_id)
            self._len += 52
            s.pending = []
            s.pending_bytes = 0
            s.event_count = 0
        return 0

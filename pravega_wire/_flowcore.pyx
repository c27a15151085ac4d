# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-message part of a connection, compiled twin of :mod:`pravega_wire._flowcore_py`
(read its docstring): a flow's ``send`` / ``append`` / ``append_event`` and the dispatch of
decoded replies to flows, with the same behaviour and the same attributes of the connection."""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t

from . import commands as C
from ._flowcore_py import CLOSED, CONNECTING, OPEN, REPLY_TYPES
from .errors import ConnectionClosedError, ConnectionFailedError

__all__ = ["IMPLEMENTATION", "ConnectionCore", "FlowCore", "dispatch", "REPLY_TYPES",
           "CONNECTING", "OPEN", "CLOSED"]

IMPLEMENTATION = "compiled"

cdef object _DataAppended = C.DataAppended
cdef object _SetupAppend = C.SetupAppend
# Reply type -> where its request id sits in the record (every reply has that field): one
# lookup says both that a frame is a reply and where to find its flow.
cdef dict _REQUEST_ID_AT = {cls: cls._fields.index("request_id") for cls in REPLY_TYPES}
cdef Py_ssize_t _DATA_APPENDED_EVENT_NUMBER = C.DataAppended._fields.index("event_number")
cdef object _CLOSED = CLOSED
cdef object _ConnectionFailedError = ConnectionFailedError


cdef class ConnectionCore:
    """The base of a connection: the state the per-message path reads, as C fields."""

    cdef public object _state
    cdef public dict _flows
    cdef public object _single
    cdef public object _encoder
    cdef public bint _flush_scheduled


cdef class FlowCore:
    """A flow's identity and its hot path. ``_conn`` is the connection while the flow is open
    (``None`` once closed or failed); ``_encoder`` is that connection's encoder."""

    cdef public object flow_id
    cdef public ConnectionCore _conn
    cdef public object _encoder
    cdef public object _listener
    cdef public object _on_reply
    cdef public object _error
    cdef public object _sessions
    cdef object _write  # the encoder's write_command, bound once

    def __init__(self, flow_id, ConnectionCore conn not None, listener):
        self.flow_id = flow_id
        self._conn = conn
        self._encoder = conn._encoder
        self._write = conn._encoder.write_command
        self._listener = listener
        self._on_reply = listener.reply_received
        self._error = None
        self._sessions = None

    def send(self, cmd):
        """Queue a command (not an append: see :meth:`append`). The append sessions a
        SetupAppend opens in the connection's encoder are released when the flow closes."""
        cdef ConnectionCore conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._write(cmd)
        except _ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()
        if type(cmd) is _SetupAppend:
            key = (cmd.segment, cmd.writer_id)
            if self._sessions is None:
                self._sessions = [key]
            elif key not in self._sessions:
                self._sessions.append(key)

    def append(self, append):
        """Queue an :class:`~pravega_wire.appends.Append` (after this flow's SetupAppend)."""
        cdef ConnectionCore conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._encoder.append(append)
        except _ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def append_event(self, segment, writer_id, event_number, payload, request_id):
        """Queue one event: an append of ``payload`` framed as an Event record (the encoder
        builds its 8-byte header in place), event count 1."""
        cdef ConnectionCore conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._encoder.append_event(segment, writer_id, event_number, payload, request_id)
        except _ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def _dead(self):
        """The error for using a flow that is closed (by us) or failed (what it was told)."""
        error = self._error
        if error is None:
            return ConnectionClosedError(f"flow {self.flow_id} is closed")
        if isinstance(error, _ConnectionFailedError):
            err = type(error)(*error.args)
        else:
            err = _ConnectionFailedError(str(error))
        err.__cause__ = error
        return err


def dispatch(ConnectionCore conn not None, replies):
    """Deliver decoded replies in order (see the pure twin's ``dispatch``)."""
    cdef dict flows = conn._flows
    cdef object single = conn._single
    cdef object record_ack = conn._encoder.record_ack
    cdef PyObject* found
    cdef PyObject* at
    cdef FlowCore flow
    cdef int64_t request_id
    cdef Py_ssize_t index
    cdef object last_kind = None  # replies come in runs of one type: look each run up once
    cdef int64_t key, last_key = -1  # no flow has id -1
    cdef FlowCore last_flow = None
    cdef Py_ssize_t last_index = 0
    for reply in replies:
        kind = type(reply)
        if kind is last_kind:
            index = last_index
        else:
            at = PyDict_GetItem(_REQUEST_ID_AT, kind)
            if at is NULL:
                if conn._control(reply):
                    continue
                return
            index = last_index = <Py_ssize_t><object>at
            last_kind = kind
        if index < PyTuple_GET_SIZE(reply) and (
                kind is not _DataAppended
                or _DATA_APPENDED_EVENT_NUMBER < PyTuple_GET_SIZE(reply)):
            rid = <object>PyTuple_GET_ITEM(reply, index)
            if kind is _DataAppended:
                record_ack(rid, <object>PyTuple_GET_ITEM(reply, _DATA_APPENDED_EVENT_NUMBER))
        else:  # not a whole record (no decoder makes one): what the attributes say
            rid = reply.request_id
            if kind is _DataAppended:
                record_ack(rid, reply.event_number)
        if single is None:
            request_id = rid
            key = request_id >> 32
            # Replies come in runs for one flow (a writer's acks, a reader's data): the flow of
            # the previous reply, while it is still open here, spares the lookup.
            if last_flow is not None and key == last_key and last_flow._conn is conn:
                flow = last_flow
            else:
                found = PyDict_GetItem(flows, key)
                if found is NULL:
                    conn._drop(reply)
                    continue
                flow = last_flow = <FlowCore?>found
                last_key = key
        else:
            flow = <FlowCore?>single
        try:
            flow._on_reply(reply)
        except Exception as e:
            conn._listener_failed(flow, e)
        if conn._state is _CLOSED:
            return

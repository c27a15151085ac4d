"""The per-message part of a connection, pure-Python twin: a flow's ``send`` / ``append`` /
``append_event`` and the dispatch of decoded replies to flows.

:mod:`pravega_wire.connection` builds its :class:`~pravega_wire.connection.FlowConnection` on
:class:`FlowCore` and hands every batch of decoded replies to :func:`dispatch`. The compiled
twin (``pravega_wire._flowcore``) does the same in C; which one is used is picked at import, as
for the codec and the append path (``PRAVEGA_WIRE_NO_EXTENSIONS``). Both read and write the same
attributes of the connection, so that the rest of the connection (opening, timers, closing,
flow bookkeeping) is plain Python above them.

What a connection must be: a :class:`ConnectionCore` with ``_encoder`` (a ``CommandEncoder``),
``_flows`` (flow id → flow), ``_single`` (the flow of a connection with flows disabled, else
``None``), ``_state``, ``_flush_scheduled`` and the methods ``_schedule_flush()``,
``_encoder_failed(exc)``, ``_control(reply)``, ``_drop(reply)`` and
``_listener_failed(flow, exc)``.
"""

from __future__ import annotations

from typing import Any, Iterable

from . import commands as C
from .errors import ConnectionClosedError, ConnectionFailedError

__all__ = ["IMPLEMENTATION", "ConnectionCore", "FlowCore", "dispatch", "REPLY_TYPES",
           "CONNECTING", "OPEN", "CLOSED"]

IMPLEMENTATION = "pure"

#: Every command a segment store may send that is routed to a flow: the replies of docs/protocol.md §3
#: (Hello and KeepAlive are handled by the connection itself).
REPLY_TYPES = frozenset((
    C.AppendSetup, C.DataAppended, C.ConditionalCheckFailed, C.SegmentRead,
    C.StreamSegmentInfo, C.SegmentAttribute, C.SegmentAttributeUpdated, C.OffsetLocated,
    C.SegmentCreated, C.SegmentSealed, C.SegmentDeleted, C.SegmentPolicyUpdated,
    C.SegmentTruncated, C.SegmentsMerged, C.SegmentsBatchMerged,
    C.WrongHost, C.SegmentIsSealed, C.SegmentAlreadyExists, C.NoSuchSegment,
    C.InvalidEventNumber, C.SegmentIsTruncated, C.OperationUnsupported, C.AuthTokenCheckFailed,
    C.ErrorMessage, C.TableSegmentNotEmpty, C.TableKeyDoesNotExist, C.TableKeyBadVersion,
    C.TableSegmentInfo, C.TableEntriesUpdated, C.TableKeysRemoved, C.TableRead,
    C.TableKeysRead, C.TableEntriesRead, C.TableEntriesDeltaRead,
    C.StorageFlushed, C.StorageChunksListed,
))

#: A connection's states (compared by identity; both twins use these objects).
CONNECTING, OPEN, CLOSED = "connecting", "open", "closed"

_DataAppended = C.DataAppended
_SetupAppend = C.SetupAppend


class ConnectionCore:
    """The base of a connection (the compiled twin keeps the state the per-message path reads
    in C fields: ``_state``, ``_flows``, ``_single``, ``_encoder``, ``_flush_scheduled``)."""

    __slots__ = ()


class FlowCore:
    """A flow's identity and its hot path. ``_conn`` is the connection while the flow is open
    (``None`` once closed or failed); ``_encoder`` is that connection's encoder."""

    __slots__ = ("flow_id", "_conn", "_encoder", "_listener", "_on_reply", "_error",
                 "_sessions")

    def __init__(self, flow_id: int, conn: Any, listener: Any):
        self.flow_id = flow_id
        self._conn = conn
        self._encoder = conn._encoder
        self._listener = listener
        self._on_reply = listener.reply_received
        self._error = None
        self._sessions = None  # [(segment, writer_id)] set up by this flow

    # The encoder raises before changing anything: InvalidMessageError / TypeError for a
    # command or append that cannot be sent, EncoderStateError for a Hello inside an append
    # block; those reach the caller and the connection stays up. ConnectionFailedError
    # (ConnectionClosedError: too many append sessions) means the encoder gave up on the
    # connection, which Java closes.

    def send(self, cmd: C.Command) -> None:
        """Queue a command (not an append: see :meth:`append`). The append sessions a
        SetupAppend opens in the connection's encoder are released when the flow closes."""
        conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._encoder.write_command(cmd)
        except ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()
        if type(cmd) is _SetupAppend:
            key = (cmd.segment, cmd.writer_id)
            if self._sessions is None:
                self._sessions = [key]
            elif key not in self._sessions:
                self._sessions.append(key)

    def append(self, append: Any) -> None:
        """Queue an :class:`~pravega_wire.appends.Append` (after this flow's SetupAppend)."""
        conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._encoder.append(append)
        except ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def append_event(self, segment: str, writer_id: Any, event_number: int, payload: Any,
                     request_id: int) -> None:
        """Queue one event: an append of ``payload`` framed as an Event record (the encoder
        builds its 8-byte header in place), event count 1."""
        conn = self._conn
        if conn is None:
            raise self._dead()
        try:
            self._encoder.append_event(segment, writer_id, event_number, payload, request_id)
        except ConnectionFailedError as e:
            raise conn._encoder_failed(e) from e
        if not conn._flush_scheduled:
            conn._schedule_flush()

    def _dead(self) -> ConnectionFailedError:
        """The error for using a flow that is closed (by us) or failed (what it was told)."""
        error = self._error
        if error is None:
            return ConnectionClosedError(f"flow {self.flow_id} is closed")
        err = type(error)(*error.args) if isinstance(error, ConnectionFailedError) \
            else ConnectionFailedError(str(error))
        err.__cause__ = error
        return err


def dispatch(conn: Any, replies: Iterable[C.Command]) -> None:
    """Deliver decoded replies in order: each DataAppended feeds the encoder's batch tracker
    first; Hello, KeepAlive and non-replies go to ``conn._control`` (which returns False once
    it closed the connection); a reply goes to the flow ``request_id >> 32`` (or to the single
    flow), or is counted as dropped. A listener that raises fails only its flow. Stops as soon
    as the connection is closed."""
    flows = conn._flows
    single = conn._single
    record_ack = conn._encoder.record_ack
    for reply in replies:
        kind = type(reply)
        if kind is _DataAppended:
            record_ack(reply.request_id, reply.event_number)
        elif kind not in REPLY_TYPES:
            if conn._control(reply):
                continue
            return
        if single is None:
            flow = flows.get(reply.request_id >> 32)
            if flow is None:
                conn._drop(reply)
                continue
        else:
            flow = single
        try:
            flow._on_reply(reply)
        except Exception as e:
            conn._listener_failed(flow, e)
        if conn._state is CLOSED:
            return

"""An embedded Pravega-compatible segment store: the wire protocol of docs/protocol.md, served with
asyncio over :mod:`pravega_wire.codec` and :class:`pravega_wire.appends.AppendDecoder`, on
:class:`~pravega_wire.server.storage.Storage`.

Per connection, bytes go through ``FrameDecoder(server=True)`` → ``AppendDecoder`` → the request
handlers below; replies are encoded and written once per loop iteration (after a group commit
of the storage, so nothing is acknowledged before it is durable).

What it does, as Pravega's segment store does (docs/protocol.md §3.8, §4.6, §9):

- Hello: replies ``Hello(17, 5)``, then closes the connection if the client's range does not
  overlap. KeepAlive is echoed.
- SetupAppend → AppendSetup with the writer's last event number, kept per segment and writer as
  a segment attribute (the writer id), so that a writer reconnecting anywhere is deduplicated.
  Each append is applied atomically with that attribute and acknowledged with one cumulative
  DataAppended (previous event number, segment length after it). An append whose event number
  is not above the stored one is a retransmission: acknowledged, not applied (docs/controller.md
  §5.4). An append whose writer attribute moved under it (another connection wrote for the same
  writer) gets InvalidEventNumber and the connection is closed. After a failed append (sealed,
  missing segment) the error is sent once and the writer forgotten; its next append on the
  connection closes it ("data from unexpected connection").
- Conditional appends: ConditionalCheckFailed on an offset mismatch; the connection stays.
- ReadSegment: ``min(2 MiB, max(8, suggested))`` bytes. At (or past) the tail of an open
  segment the read is held (long poll) until the segment changes: data appended by any
  connection answers it at once, a seal answers ``SegmentIsSealed``, a deletion
  ``NoSuchSegment``; after ``read_wait`` seconds (Java's read timeout, one minute, by default)
  it is answered empty with ``atTail``. A connection's held reads end with it, unanswered.
  At the end of a sealed segment ``endOfSegment``; past it the connection is closed (Java's
  read index throws). SegmentIsTruncated / NoSuchSegment carry the read offset.
- GetStreamSegmentInfo of a missing (or deleted, or merged) segment: NoSuchSegment (offset -1).
- Appends add their event count to the ``EVENT_COUNT`` core attribute.
- Truncation outside ``[start, length]``: SegmentIsTruncated with the current start offset and
  the requested offset, the segment unchanged; a sealed segment may be truncated.
  UpdateSegmentAttribute on a sealed segment: SegmentIsSealed.
- Segment management, attributes, transient segments (deleted with their connection unless
  merged; the parent need not exist), merges (the source need not be sealed; a batch merge of
  a source merged already answers the target's length), table segments (:mod:`.tables`).
- FlushToStorage and ListStorageChunks (admin-port commands) close the connection, no reply.
- Ownership: a request for a segment another store owns gets WrongHost (``correctHost = ""``).
- Delegation tokens when ``token_key`` is set: AuthTokenCheckFailed with TOKEN_CHECK_FAILED or
  TOKEN_EXPIRED (an expired token on the append path also closes the connection; a failed
  ReadSegment check carries the read offset in the request id field, as Java does).
- Malformed input (a bad frame, a reply type, an append-path violation): the connection is logged
  at WARNING and closed after the replies to what preceded it; no other connection is affected.

Fault hooks (:mod:`.faults`) are consulted at each step when the store's plan has rules.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import commands as C
from ..appends import Append, AppendDecoder
from ..codec import FrameDecoder, encode, encode_parts
from ..errors import InvalidMessageError
from .tokens import verify_token
from .faults import REPLY_ACTIONS, FaultPlan
from .placement import DEFAULT_CONTAINER_COUNT, store_index_of
from .rates import RateMeter
from .storage import (NULL_ATTRIBUTE_VALUE, TABLE, TRANSIENT, UnexpectedOffsetError, Segment,
                      SegmentExistsError, SealedSegmentError, Storage, StorageError,
                      SegmentTypeMismatchError, transient_segment_name)
from .tables import (KeyVersionMismatchError, BadTableOffsetError, Entry, KeyNotFoundError,
                     TableArgumentError, TableError, TableFormatError, TableNotEmptyError,
                     TableUnsupportedError)

__all__ = ["SegmentStore", "MAX_READ_SIZE", "DEFAULT_READ_WAIT", "MAX_HELD_READS"]

_LOG = logging.getLogger("pravega_wire.server.segmentstore")

#: The most a ReadSegment returns (Java's ``MAX_READ_SIZE``).
MAX_READ_SIZE = 2 * 1024 * 1024
#: How long a read at the tail of an open segment is held for data, by default (seconds):
#: Java's ``PravegaRequestProcessor.TIMEOUT`` (one minute). The real store answers such a
#: read when a periodic sweep notices the timeout, so it holds it longer (95-126 s seen).
DEFAULT_READ_WAIT = 60.0
#: Held reads per connection. A read held beyond this many is answered as its timeout would
#: answer it (empty, ``atTail``), oldest first, so a client flooding reads at a tail cannot
#: grow the store's memory without bound; real clients keep one read per flow.
MAX_HELD_READS = 4096
#: Table reads stop adding entries once the reply holds this many bytes (as Java does).
_MAX_TABLE_READ_BYTES = MAX_READ_SIZE
#: Bytes of a table read reply besides the segment name and the entries (type, request id...).
_TABLE_REPLY_HEADER = 16
#: ``ErrorMessage.ErrorCode.ILLEGAL_ARGUMENT_EXCEPTION``.
_ILLEGAL_ARGUMENT = 0
#: Bound on each wait while stopping (seconds).
_STOP_WAIT = 5.0
#: Writes at least this big go to the transport on their own instead of being joined.
_DIRECT_WRITE = 64 * 1024

_HEADER = struct.Struct(">ii")
_TOKEN_CHECK_FAILED = C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED
_TOKEN_EXPIRED = C.AuthTokenCheckFailed.TOKEN_EXPIRED
class _ProtocolError(Exception):
    """A client broke the protocol in a way Java's store answers by closing the connection."""


class _WriterState:
    """A writer's append state on one connection: the last event number stored for it and the
    last one acknowledged (both start at AppendSetup's lastEventNumber)."""

    __slots__ = ("last_stored", "last_acked")

    def __init__(self, last_event_number: int):
        self.last_stored = last_event_number
        self.last_acked = last_event_number


class _PendingRead:
    """A ReadSegment being answered; while it waits at the tail of a segment (long poll) it is
    one of the segment's watchers, and calling it retries the read."""

    __slots__ = ("connection", "cmd", "segment", "timer", "done")

    def __init__(self, connection: _Connection, cmd: C.ReadSegment):
        self.connection = connection
        self.cmd = cmd
        self.segment: Segment | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def __call__(self, segment: Segment) -> None:
        if not self.done and not self.connection.closed:
            self.connection._read(self)


class _Connection(asyncio.Protocol):
    """One client connection of a :class:`SegmentStore`."""

    def __init__(self, store: SegmentStore):
        self.store = store
        self.storage = store.storage
        self.faults = store.faults
        self.loop = store._loop
        self.decoder = FrameDecoder(server=True)
        self.appends = AppendDecoder()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.writers: dict[tuple[str, uuid.UUID], _WriterState] = {}
        self.reads: dict[_PendingRead, None] = {}  # held reads, oldest first
        self.transients: set[str] = set()
        self.closed = False
        self.stalled = False
        self.lost: asyncio.Future[None] = store._loop.create_future()
        self._out: list[Any] = []
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._hold_until = 0.0

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if not self.store._accepting:  # accepted just before stop(): never serve it
            self.closed = True
            transport.abort()
            return
        self.store._connections.add(self)
        if self.faults.active and self.faults.fire(("stall",)) is not None:
            self.stalled = True
            self.store.stats["fault stall"] += 1
            transport.pause_reading()
            _LOG.info("fault: stalling connection from %s", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.store._connections.discard(self)
        self._cancel_reads(reply=False)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()
        for name in self.transients:
            segment = self.storage.get(name)
            if segment is not None:
                self.storage.delete(segment)
        self.transients.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        # The client reads too slowly: stop reading its requests until it catches up.
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed and not self.stalled:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.stalled:
            return
        failure: InvalidMessageError | None = None
        try:
            commands = self.decoder.feed(data)
        except InvalidMessageError as exc:
            commands, failure = exc.decoded, exc
        stats = self.store.stats
        process = self.appends.process
        try:
            for cmd in commands:
                if self.closed:
                    return
                stats[type(cmd).__name__] += 1
                for item in process(cmd):
                    if type(item) is Append:
                        self._on_append(item)
                    else:
                        self._dispatch(item)
                    if self.closed:
                        return
        except (InvalidMessageError, _ProtocolError) as exc:
            self._protocol_error(exc)
            return
        if failure is not None:
            self._protocol_error(failure)

    # ---- output -------------------------------------------------------------------------------

    def send(self, cmd: C.Command) -> None:
        """Queue a reply; it is written at the end of this loop iteration."""
        if self.closed:
            return
        if self.faults.active and not self._reply_fault(cmd):
            return
        self.store.stats["> " + type(cmd).__name__] += 1
        # Large payloads (SegmentRead data: views of the stored bytes) stay separate buffers.
        self._out.extend(encode_parts(cmd))
        self._schedule_flush()

    def _reply_fault(self, cmd: C.Command) -> bool:
        """Apply a reply fault; False if the reply must not be sent as it is."""
        rule = self.faults.fire(REPLY_ACTIONS, type(cmd).__name__)
        if rule is None:
            return True
        action = rule.action
        self.store.stats["fault " + action] += 1
        _LOG.info("fault %s on %s to %s", action, type(cmd).__name__, self.peer)
        if action == "delay":
            self._hold_until = max(self._hold_until, self.loop.time() + rule.delay)
            return True
        if action == "no_reply":
            return False
        if action == "wrong_request_id":
            if "request_id" in cmd._fields:
                cmd = cmd._replace(request_id=cmd.request_id + rule.value)
            self._out.append(encode(cmd))
        elif action == "garbage":
            self._out.append(os.urandom(64))
        elif action == "oversized":
            self._out.append(_HEADER.pack(type(cmd).TYPE, C.MAX_WIRECOMMAND_SIZE + 1))
        else:  # unknown_type
            self._out.append(_HEADER.pack(13, 0))
        self._schedule_flush()
        return False

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            if self._hold_until > self.loop.time():
                self._flush_handle = self.loop.call_at(self._hold_until, self._flush)
            else:
                self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.closed or not self._out:
            return
        if self._hold_until > self.loop.time():
            self._schedule_flush()
            return
        if self.storage.pending:
            try:
                self.storage.commit()  # group commit: durable before anything is acknowledged
            except OSError:
                _LOG.exception("storage commit failed: dropping the connection from %s "
                               "without acknowledging", self.peer)
                self.close(abort=True)
                return
        out, self._out = self._out, []
        transport = self.transport
        assert transport is not None
        small: list[Any] = []
        for chunk in out:
            if len(chunk) >= _DIRECT_WRITE:
                if small:
                    transport.write(b"".join(small))
                    small = []
                transport.write(chunk)
            else:
                small.append(chunk)
        if small:
            transport.write(small[0] if len(small) == 1 else b"".join(small))

    def close(self, *, abort: bool = False) -> None:
        """Close the connection: after writing what is queued, or at once (``abort``)."""
        if self.closed or self.transport is None:
            return
        if abort:
            self._out.clear()
            self.closed = True
            self.transport.abort()
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._hold_until = 0.0
        self._flush()
        self.closed = True
        self.transport.close()

    def _protocol_error(self, exc: Exception) -> None:
        _LOG.warning("closing connection from %s: %s", self.peer, exc)
        self.store.stats["protocol errors"] += 1
        self.close()

    def _cancel_reads(self, *, reply: bool) -> None:
        for pending in list(self.reads):
            self._finish_read(pending)
            if reply:
                cmd = pending.cmd
                self.send(C.SegmentRead(cmd.segment, cmd.offset, True, False, b"",
                                        cmd.request_id))

    # ---- checks shared by the handlers --------------------------------------------------------

    def _token_failure(self, token: str, segment: str, request_id: int, *,
                       append_path: bool = False) -> bool:
        """Send AuthTokenCheckFailed and return True if ``token`` does not grant ``segment``."""
        key = self.store.token_key
        if key is None:
            return False
        check = verify_token(token, key, self.store.token_clock(), segment=segment)
        if check == "ok":
            return False
        expired = check == "expired"
        self.send(C.AuthTokenCheckFailed(request_id, "",
                                         _TOKEN_EXPIRED if expired else _TOKEN_CHECK_FAILED))
        if append_path and expired:
            self.close()
        return True

    def _wrong_host(self, segment: str, request_id: int) -> bool:
        if self.store.owns(segment):
            return False
        self.send(C.WrongHost(request_id, segment, "", ""))
        return True

    def _fault(self, command: str, segment: str, request_id: int, offset: int = -1) -> bool:
        """Apply a ``fail_segment`` fault to a request; True if it was answered."""
        if not self.faults.active:
            return False
        rule = self.faults.fire(("fail_segment",), command, segment)
        if rule is None:
            return False
        _LOG.info("fault: answering %s on %s with %s", command, segment, rule.reply)
        self.store.stats["fault fail_segment"] += 1
        append_path = command in ("SetupAppend", "Append")
        if rule.reply == "sealed":
            self.send(C.SegmentIsSealed(request_id, segment, "", offset))
        elif rule.reply == "no_such_segment":
            # The append path reports no offset for a missing segment (Java sends -1).
            self.send(C.NoSuchSegment(request_id, segment, "", -1 if append_path else offset))
        elif rule.reply == "wrong_host":
            self.send(C.WrongHost(request_id, segment, "", ""))
        else:
            self.send(C.AuthTokenCheckFailed(request_id, "", _TOKEN_EXPIRED))
            if append_path:  # as for a real expired token: the append path closes
                self.close()
        return True

    def _admit(self, command: str, segment: str, token: str, request_id: int,
               offset: int = -1) -> bool:
        """Token, ownership and injected faults, in that order; False if already answered."""
        return not (self._token_failure(token, segment, request_id)
                    or self._wrong_host(segment, request_id)
                    or self._fault(command, segment, request_id, offset))

    def _segment(self, name: str, request_id: int, offset: int = -1) -> Segment | None:
        """The segment, or None after answering NoSuchSegment."""
        segment = self.storage.get(name)
        if segment is None:
            self.send(C.NoSuchSegment(request_id, name, "", offset))
        return segment

    def _unsupported(self, request_id: int, operation: str) -> None:
        self.send(C.OperationUnsupported(request_id, operation, ""))

    # ---- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, cmd: C.Command) -> None:
        handler = _HANDLERS.get(type(cmd))
        if handler is None:  # a reply type (Java's server cannot cast it to a request)
            raise _ProtocolError(f"{type(cmd).__name__} is not a request")
        handler(self, cmd)

    # ---- connection control -------------------------------------------------------------------

    def _on_hello(self, cmd: C.Hello) -> None:
        if self.faults.active and self.faults.fire(("incompatible_hello",)) is not None:
            _LOG.info("fault: incompatible Hello to %s", self.peer)
            self.store.stats["fault incompatible_hello"] += 1
            self.send(C.Hello(4, 1))
            return
        self.send(C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION))
        mismatch = C.hello_mismatch(cmd)
        if mismatch is not None:
            _LOG.warning("closing connection from %s: the client %s", self.peer, mismatch)
            self.close()

    def _on_keep_alive(self, cmd: C.KeepAlive) -> None:
        self.send(cmd)

    def _on_admin_only(self, cmd: Any) -> None:
        # Java serves these on the admin port only; on the data port its request processor
        # fails them and the connection is closed without a reply.
        raise _ProtocolError(f"{type(cmd).__name__} is an admin command")

    # ---- appends ------------------------------------------------------------------------------

    def _on_setup_append(self, cmd: C.SetupAppend) -> None:
        rid, name, writer = cmd.request_id, cmd.segment, cmd.writer_id
        if self._token_failure(cmd.delegation_token, name, rid, append_path=True) \
                or self._wrong_host(name, rid) or self._fault("SetupAppend", name, rid):
            return
        segment = self._segment(name, rid)
        if segment is None:
            return
        if segment.is_table:
            self._unsupported(rid, "setupAppend")
            return
        last = segment.attribute(writer)
        self.writers[(name, writer)] = _WriterState(last)
        self.send(C.AppendSetup(rid, name, writer, last))

    def _on_append(self, append: Append) -> None:
        key = (append.segment, append.writer_id)
        state = self.writers.get(key)
        if state is None:
            raise _ProtocolError(f"data from unexpected connection: segment {append.segment!r}, "
                                 f"writer {append.writer_id}")
        faults = self.faults
        if faults.active:
            rule = faults.fire(("drop_before_append",), "Append", append.segment)
            if rule is not None:
                _LOG.info("fault: dropping %s before append %d", self.peer,
                          append.event_number)
                self.store.stats["fault drop_before_append"] += 1
                self.close(abort=True)
                return
            if self._fault("Append", append.segment, append.request_id,
                           append.event_number):
                del self.writers[key]
                return
        segment = self.storage.get(append.segment)
        rid, writer, event_number = append.request_id, append.writer_id, append.event_number
        if segment is None:
            self.send(C.NoSuchSegment(rid, append.segment, "", -1))
            del self.writers[key]
            return
        stored = segment.attributes.get(writer, NULL_ATTRIBUTE_VALUE)
        if stored != NULL_ATTRIBUTE_VALUE and event_number <= stored:
            # A retransmission of what is stored already: acknowledge, do not apply.
            self.store.stats["appends deduplicated"] += 1
            if event_number > state.last_stored:
                state.last_stored = event_number
            self._ack(state, append, segment.write_offset)
            return
        if stored != state.last_stored:
            self.send(C.InvalidEventNumber(writer, rid, "", event_number))
            _LOG.warning("closing connection from %s: writer %s on %s expected event %d, the "
                         "segment has %d", self.peer, writer, append.segment,
                         state.last_stored, stored)
            self.close()
            return
        before = segment.write_offset
        try:
            length = self.storage.append(segment, append.data, ((writer, event_number),),
                                         append.expected_length, append.event_count)
        except UnexpectedOffsetError:
            self.send(C.ConditionalCheckFailed(writer, event_number, rid))
            return
        except SealedSegmentError:
            self.send(C.SegmentIsSealed(rid, append.segment, "", event_number))
            del self.writers[key]
            return
        except SegmentTypeMismatchError:
            self._unsupported(rid, "appending data")
            del self.writers[key]
            return
        state.last_stored = event_number
        self.store.stats["appends applied"] += 1
        self.store.rates.record(append.segment, append.event_count, length - before)
        self._ack(state, append, length)
        if faults.active and faults.fire(("drop_after_append",), "Append",
                                         append.segment) is not None:
            _LOG.info("fault: dropping %s after append %d", self.peer, event_number)
            self.store.stats["fault drop_after_append"] += 1
            self.close(abort=True)

    def _ack(self, state: _WriterState, append: Append, length: int) -> None:
        """One cumulative DataAppended, unless this append was acknowledged already."""
        if append.event_number > state.last_acked:
            previous, state.last_acked = state.last_acked, append.event_number
            self.send(C.DataAppended(append.request_id, append.writer_id, append.event_number,
                                     previous, length))

    def _on_create_transient(self, cmd: C.CreateTransientSegment) -> None:
        rid = cmd.request_id
        name = transient_segment_name(cmd.parent_segment, cmd.writer_id)
        if self._wrong_host(name, rid) or self._fault("CreateTransientSegment",
                                                      cmd.parent_segment, rid):
            return
        self.storage.create(name, TRANSIENT)
        self.transients.add(name)
        self.send(C.SegmentCreated(rid, name))

    # ---- reads --------------------------------------------------------------------------------

    def _on_read_segment(self, cmd: C.ReadSegment) -> None:
        name = cmd.segment
        # Java's quirk: a failed token check on a read reports the read offset as request id.
        if self._token_failure(cmd.delegation_token, name, cmd.offset) \
                or self._wrong_host(name, cmd.request_id) \
                or self._fault("ReadSegment", name, cmd.request_id, cmd.offset):
            return
        self._read(_PendingRead(self, cmd))

    def _read(self, pending: _PendingRead) -> None:
        """Answer ``pending`` now, or make it wait for the segment to change."""
        cmd = pending.cmd
        name, offset, rid = cmd.segment, cmd.offset, cmd.request_id
        segment = self.storage.get(name)
        if segment is None:
            self._finish_read(pending)
            self.send(C.NoSuchSegment(rid, name, "", offset))
            return
        if offset < segment.start_offset:
            self._finish_read(pending)
            self.send(C.SegmentIsTruncated(rid, name, segment.start_offset, "", offset))
            return
        length = segment.length
        if offset < length:
            self._finish_read(pending)
            size = min(MAX_READ_SIZE, max(8, cmd.suggested_length))
            data = segment.read(offset, size)
            end = offset + len(data)
            self.send(C.SegmentRead(name, offset, end == length and not segment.sealed,
                                    end == length and segment.sealed, data, rid))
            return
        if segment.sealed:
            held = pending.timer is not None
            self._finish_read(pending)
            if held:  # sealed while the read was held
                self.send(C.SegmentIsSealed(rid, name, "", offset))
            elif offset == length:
                self.send(C.SegmentRead(name, offset, False, True, b"", rid))
            else:
                self._protocol_error(_ProtocolError(
                    f"ReadSegment at {offset}, past the end {length} of sealed segment {name!r}"))
            return
        # At (or past) the tail of an open segment: hold it until the segment changes.
        if pending.timer is None:
            reads = self.reads
            if len(reads) >= MAX_HELD_READS:
                self._read_timeout(next(iter(reads)))
            pending.timer = self.loop.call_later(self.store.read_wait, self._read_timeout,
                                                 pending)
            reads[pending] = None
        pending.segment = segment
        segment.watchers.append(pending)

    def _read_timeout(self, pending: _PendingRead) -> None:
        if pending.done or self.closed:
            return
        self._finish_read(pending)
        cmd = pending.cmd
        self.send(C.SegmentRead(cmd.segment, cmd.offset, True, False, b"", cmd.request_id))

    def _finish_read(self, pending: _PendingRead) -> None:
        if pending.done:
            return
        pending.done = True
        if pending.timer is not None:
            pending.timer.cancel()
            self.reads.pop(pending, None)
        segment = pending.segment
        if segment is not None and pending in segment.watchers:
            segment.watchers.remove(pending)  # idle segments must not collect dead watchers

    # ---- segment metadata ---------------------------------------------------------------------

    def _on_get_info(self, cmd: C.GetStreamSegmentInfo) -> None:
        rid, name = cmd.request_id, cmd.segment_name
        if not self._admit("GetStreamSegmentInfo", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is not None:
            self.send(C.StreamSegmentInfo(rid, name, True, segment.sealed, False,
                                          segment.last_modified, segment.write_offset,
                                          segment.start_offset))

    def _on_get_attribute(self, cmd: C.GetSegmentAttribute) -> None:
        rid, name = cmd.request_id, cmd.segment_name
        if not self._admit("GetSegmentAttribute", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is not None:
            self.send(C.SegmentAttribute(rid, segment.attribute(cmd.attribute_id)))

    def _on_update_attribute(self, cmd: C.UpdateSegmentAttribute) -> None:
        rid, name = cmd.request_id, cmd.segment_name
        if not self._admit("UpdateSegmentAttribute", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is None:
            return
        if segment.sealed:
            self.send(C.SegmentIsSealed(rid, name, "", -1))
            return
        if segment.attribute(cmd.attribute_id) != cmd.expected_value:
            self.send(C.SegmentAttributeUpdated(rid, False))
            return
        self.storage.update_attributes(segment, ((cmd.attribute_id, cmd.new_value),))
        self.send(C.SegmentAttributeUpdated(rid, True))

    def _on_locate_offset(self, cmd: C.LocateOffset) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("LocateOffset", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is not None:
            # No index segments here: Java answers with the segment's length then.
            self.send(C.OffsetLocated(rid, name, segment.write_offset))

    # ---- segment management -------------------------------------------------------------------

    def _on_create_segment(self, cmd: C.CreateSegment) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("CreateSegment", name, cmd.delegation_token, rid):
            return
        try:
            self.storage.create(name)
        except SegmentExistsError:
            self.send(C.SegmentAlreadyExists(rid, name, ""))
            return
        self.send(C.SegmentCreated(rid, name))

    def _on_seal_segment(self, cmd: C.SealSegment) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("SealSegment", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is None:
            return
        if self.storage.seal(segment):
            self.send(C.SegmentSealed(rid, name))
        else:
            self.send(C.SegmentIsSealed(rid, name, "", -1))

    def _on_truncate_segment(self, cmd: C.TruncateSegment) -> None:
        rid, name, offset = cmd.request_id, cmd.segment, cmd.truncation_offset
        if not self._admit("TruncateSegment", name, cmd.delegation_token, rid, offset):
            return
        segment = self._segment(name, rid, offset)
        if segment is None:
            return
        try:
            self.storage.truncate(segment, offset)
        except UnexpectedOffsetError:  # the segment is unchanged: report its start, as Java does
            self.send(C.SegmentIsTruncated(rid, name, segment.start_offset, "", offset))
            return
        except SegmentTypeMismatchError:
            self._unsupported(rid, "truncateSegment")
            return
        self.send(C.SegmentTruncated(rid, name))

    def _on_delete_segment(self, cmd: C.DeleteSegment) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("DeleteSegment", name, cmd.delegation_token, rid):
            return
        segment = self._segment(name, rid)
        if segment is not None:
            self.storage.delete(segment)
            self.send(C.SegmentDeleted(rid, name))

    def _on_update_policy(self, cmd: C.UpdateSegmentPolicy) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("UpdateSegmentPolicy", name, cmd.delegation_token, rid):
            return
        if self._segment(name, rid) is not None:
            self.send(C.SegmentPolicyUpdated(rid, name))

    def _on_merge(self, cmd: C.MergeSegments) -> None:
        rid, target_name, source_name = cmd.request_id, cmd.target, cmd.source
        # As Java: the token is checked against the source, errors name the source.
        if self._token_failure(cmd.delegation_token, source_name, rid) \
                or self._wrong_host(target_name, rid) or self._wrong_host(source_name, rid) \
                or self._fault("MergeSegments", source_name, rid):
            return
        target = self.storage.get(target_name)
        source = self.storage.get(source_name)
        if target is None or source is None:
            self.send(C.NoSuchSegment(rid, source_name, "", -1))
            return
        for update in cmd.attribute_updates:
            if update.attribute_update_type == C.ConditionalAttributeUpdate.REPLACE_IF_EQUALS \
                    and target.attribute(update.attribute_id) != update.old_value:
                self.send(C.SegmentAttributeUpdated(rid, False))
                return
        try:
            length = self.storage.merge(target, source)
        except SealedSegmentError:
            self.send(C.SegmentIsSealed(rid, source_name, "", -1))
            return
        except StorageError:
            self._unsupported(rid, "mergeSegments")
            return
        self.transients.discard(source_name)
        if cmd.attribute_updates:
            self.storage.update_attributes(
                target, [(u.attribute_id, u.new_value) for u in cmd.attribute_updates])
        self.send(C.SegmentsMerged(rid, target_name, source_name, length))

    def _on_merge_batch(self, cmd: C.MergeSegmentsBatch) -> None:
        rid, target_name = cmd.request_id, cmd.target_segment_id
        sources = list(cmd.source_segment_ids)
        if self._token_failure(cmd.delegation_token, target_name, rid) or any(
                self._token_failure(cmd.delegation_token, s, rid) for s in sources):
            return
        if self._wrong_host(target_name, rid) or any(self._wrong_host(s, rid) for s in sources) \
                or self._fault("MergeSegmentsBatch", target_name, rid):
            return
        target = self._segment(target_name, rid)
        if target is None:
            return
        offsets = []
        for source_name in sources:
            source = self.storage.get(source_name)
            if source is None:  # merged already (Java's answer for a missing source)
                offsets.append(target.write_offset)
                continue
            try:
                offsets.append(self.storage.merge(target, source))
            except SealedSegmentError:
                self.send(C.SegmentIsSealed(rid, target_name, "", -1))
                return
            except StorageError:
                self._unsupported(rid, "mergeSegmentsBatch")
                return
            self.transients.discard(source_name)
        self.send(C.SegmentsBatchMerged(rid, target_name, sources, offsets))

    # ---- table segments -----------------------------------------------------------------------

    def _table(self, name: str, rid: int, command: str) -> Segment | None:
        """The table segment, or None after answering NoSuchSegment. A table command on a
        segment that is not a table closes the connection without a reply, as Java's store
        does (every reply still pending on the connection is lost)."""
        segment = self._segment(name, rid)
        if segment is not None and not segment.is_table:
            raise _ProtocolError(f"{command} on {name!r}, which is not a table segment")
        return segment

    def _table_failure(self, exc: TableError, rid: int, name: str, operation: str,
                       offset: int = -1) -> None:
        """The reply Java's store sends for a refused table operation."""
        if isinstance(exc, KeyNotFoundError):
            self.send(C.TableKeyDoesNotExist(rid, name, ""))
        elif isinstance(exc, KeyVersionMismatchError):
            self.send(C.TableKeyBadVersion(rid, name, ""))
        elif isinstance(exc, BadTableOffsetError):
            self.send(C.SegmentIsTruncated(rid, name, exc.length, "", offset))
        elif isinstance(exc, TableNotEmptyError):
            self.send(C.TableSegmentNotEmpty(rid, name, ""))
        elif isinstance(exc, TableArgumentError):
            self.send(C.ErrorMessage(rid, name, str(exc), _ILLEGAL_ARGUMENT))
        elif isinstance(exc, TableUnsupportedError):
            self._unsupported(rid, operation)
        else:
            assert isinstance(exc, TableFormatError)
            raise _ProtocolError(f"{operation} on {name!r}: {exc}")

    def _on_create_table(self, cmd: C.CreateTableSegment) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("CreateTableSegment", name, cmd.delegation_token, rid):
            return
        try:
            self.storage.create(name, TABLE, key_length=cmd.key_length)
        except SegmentExistsError:
            self.send(C.SegmentAlreadyExists(rid, name, ""))
            return
        except TableError as exc:
            self._table_failure(exc, rid, name, "createTableSegment")
            return
        self.send(C.SegmentCreated(rid, name))

    def _on_delete_table(self, cmd: C.DeleteTableSegment) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("DeleteTableSegment", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "DeleteTableSegment")
        if segment is None:
            return
        assert segment.table is not None
        if cmd.must_be_empty:
            if segment.table.fixed:
                self._unsupported(rid, "deleteTableSegment")
                return
            if segment.table.entry_count:
                self.send(C.TableSegmentNotEmpty(rid, name, ""))
                return
        self.storage.delete(segment)
        self.send(C.SegmentDeleted(rid, name))

    def _on_get_table_info(self, cmd: C.GetTableSegmentInfo) -> None:
        rid, name = cmd.request_id, cmd.segment_name
        if not self._admit("GetTableSegmentInfo", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "GetTableSegmentInfo")
        if segment is not None:
            table = segment.table
            assert table is not None
            self.send(C.TableSegmentInfo(rid, name, segment.start_offset, segment.length,
                                         table.entry_count, table.key_length))

    def _on_update_table(self, cmd: C.UpdateTableEntries) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("UpdateTableEntries", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "UpdateTableEntries")
        if segment is None:
            return
        entries = [(key.data, value.data, key.key_version)
                   for key, value in cmd.table_entries.entries]
        try:
            versions = self.storage.table_update(segment, entries, cmd.table_segment_offset)
        except TableError as exc:
            self._table_failure(exc, rid, name, "updateTableEntries", cmd.table_segment_offset)
            return
        except SealedSegmentError:
            self.send(C.SegmentIsSealed(rid, name, "", cmd.table_segment_offset))
            return
        self.send(C.TableEntriesUpdated(rid, versions))

    def _on_remove_keys(self, cmd: C.RemoveTableKeys) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("RemoveTableKeys", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "RemoveTableKeys")
        if segment is None:
            return
        try:
            self.storage.table_remove(segment, [(k.data, k.key_version) for k in cmd.keys],
                                      cmd.table_segment_offset)
        except TableError as exc:
            self._table_failure(exc, rid, name, "removeTableKeys", cmd.table_segment_offset)
            return
        except SealedSegmentError:
            self.send(C.SegmentIsSealed(rid, name, "", cmd.table_segment_offset))
            return
        self.send(C.TableKeysRemoved(rid, name))

    def _on_read_table(self, cmd: C.ReadTable) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("ReadTable", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "ReadTable")
        if segment is None:
            return
        assert segment.table is not None
        keys = [bytes(k.data) for k in cmd.keys]
        try:
            found_entries = segment.table.get(keys)
        except TableError as exc:
            self._table_failure(exc, rid, name, "readTable")
            return
        entries = []
        for key, found in zip(keys, found_entries):
            if found is None:  # as Java: the key, NOT_EXISTS and an empty value
                entries.append((C.TableKey(key, C.TableKey.NOT_EXISTS), C.TableValue(b"")))
            else:
                entries.append((C.TableKey(key, found.version), C.TableValue(found.value)))
        self.send(C.TableRead(rid, name, C.TableEntries(entries)))

    def _iterate_table(self, cmd: C.ReadTableKeys | C.ReadTableEntries, count: int,
                       operation: str, size: Callable[[Entry], int]
                       ) -> tuple[list[Entry], bytes] | None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit(type(cmd).__name__, name, cmd.delegation_token, rid):
            return None
        segment = self._table(name, rid, type(cmd).__name__)
        if segment is None:
            return None
        assert segment.table is not None
        args = cmd.args
        try:
            return segment.table.iterate(bytes(args.continuation_token), bytes(args.from_key),
                                         bytes(args.to_key), count,
                                         _table_read_budget(name), size)
        except TableError as exc:
            self._table_failure(exc, rid, name, operation)
            return None

    def _on_read_table_keys(self, cmd: C.ReadTableKeys) -> None:
        result = self._iterate_table(cmd, cmd.suggested_key_count, "readTableKeys", _key_size)
        if result is not None:
            found, token = result
            self.send(C.TableKeysRead(cmd.request_id, cmd.segment,
                                      [C.TableKey(e.key, e.version) for e in found], token))

    def _on_read_table_entries(self, cmd: C.ReadTableEntries) -> None:
        result = self._iterate_table(cmd, cmd.suggested_entry_count, "readTableEntries",
                                     _entry_size)
        if result is not None:
            found, token = result
            entries = [(C.TableKey(e.key, e.version), C.TableValue(e.value)) for e in found]
            self.send(C.TableEntriesRead(cmd.request_id, cmd.segment, C.TableEntries(entries),
                                         token))

    def _on_read_delta(self, cmd: C.ReadTableEntriesDelta) -> None:
        rid, name = cmd.request_id, cmd.segment
        if not self._admit("ReadTableEntriesDelta", name, cmd.delegation_token, rid):
            return
        segment = self._table(name, rid, "ReadTableEntriesDelta")
        if segment is None:
            return
        assert segment.table is not None
        try:
            found, should_clear, reached_end, last_position = segment.table.delta(
                segment.read_exact, segment.start_offset, segment.length, cmd.from_position,
                cmd.suggested_entry_count, _table_read_budget(name), _entry_size)
        except TableError as exc:
            self._table_failure(exc, rid, name, "readTableEntriesDelta")
            return
        entries = [(C.TableKey(e.key, e.version), C.TableValue(e.value)) for e in found]
        self.send(C.TableEntriesDeltaRead(rid, name, C.TableEntries(entries), should_clear,
                                          reached_end, last_position))


def _table_read_budget(segment: str) -> int:
    """Bytes a table read may fill (Java's ``MAX_READ_SIZE``, less the reply's header)."""
    return _MAX_TABLE_READ_BYTES - len(segment.encode("utf-8")) - _TABLE_REPLY_HEADER


def _key_size(entry: Entry) -> int:
    """Bytes of a TableKey on the wire (data length, data, version)."""
    return 4 + len(entry.key) + 8


def _entry_size(entry: Entry) -> int:
    """Bytes of a TableKey and its TableValue on the wire."""
    return _key_size(entry) + 4 + len(entry.value)


_HANDLERS: dict[type, Callable[[_Connection, Any], None]] = {
    C.Hello: _Connection._on_hello,
    C.KeepAlive: _Connection._on_keep_alive,
    C.SetupAppend: _Connection._on_setup_append,
    C.CreateTransientSegment: _Connection._on_create_transient,
    C.ReadSegment: _Connection._on_read_segment,
    C.GetStreamSegmentInfo: _Connection._on_get_info,
    C.GetSegmentAttribute: _Connection._on_get_attribute,
    C.UpdateSegmentAttribute: _Connection._on_update_attribute,
    C.LocateOffset: _Connection._on_locate_offset,
    C.CreateSegment: _Connection._on_create_segment,
    C.SealSegment: _Connection._on_seal_segment,
    C.TruncateSegment: _Connection._on_truncate_segment,
    C.DeleteSegment: _Connection._on_delete_segment,
    C.UpdateSegmentPolicy: _Connection._on_update_policy,
    C.MergeSegments: _Connection._on_merge,
    C.MergeSegmentsBatch: _Connection._on_merge_batch,
    C.CreateTableSegment: _Connection._on_create_table,
    C.DeleteTableSegment: _Connection._on_delete_table,
    C.GetTableSegmentInfo: _Connection._on_get_table_info,
    C.UpdateTableEntries: _Connection._on_update_table,
    C.RemoveTableKeys: _Connection._on_remove_keys,
    C.ReadTable: _Connection._on_read_table,
    C.ReadTableKeys: _Connection._on_read_table_keys,
    C.ReadTableEntries: _Connection._on_read_table_entries,
    C.ReadTableEntriesDelta: _Connection._on_read_delta,
    C.FlushToStorage: _Connection._on_admin_only,
    C.ListStorageChunks: _Connection._on_admin_only,
}


class SegmentStore:
    """One embedded segment store serving the wire protocol on ``host:port``.

    ``storage`` holds its segments (a fresh in-memory :class:`Storage` by default). Among
    ``store_count`` stores this is number ``index``: it owns the segments
    :func:`~pravega_wire.server.placement.store_index_of` maps to it and answers WrongHost for
    the others. ``token_key`` turns delegation-token checking on (tokens from an
    :class:`~pravega_wire.server.controller.EmbeddedController` with that key), against
    ``token_clock`` (unix seconds; :func:`time.time` by default, an injected clock in tests).
    ``read_wait`` is how long a read at the tail is held before it is answered empty
    (:data:`DEFAULT_READ_WAIT`, Java's one minute; tests of the timeout pass less).
    ``faults`` is the store's :class:`FaultPlan` (an empty one by default; program it at any
    time).

    ``stats`` counts the commands received (by class name; appends by the frames that carried
    them) and, prefixed with ``"> "``, the replies sent.
    """

    def __init__(self, storage: Storage | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, index: int = 0, store_count: int = 1,
                 token_key: bytes | None = None, read_wait: float = DEFAULT_READ_WAIT,
                 faults: FaultPlan | None = None,
                 container_count: int = DEFAULT_CONTAINER_COUNT,
                 rates: RateMeter | None = None,
                 token_clock: Callable[[], float] = time.time):
        if not 0 <= index < store_count:
            raise ValueError(f"store index {index} is not in [0, {store_count})")
        if not read_wait > 0:
            raise ValueError("read_wait must be positive")
        self.storage = storage if storage is not None else Storage()
        self.host = host
        self.port = port
        self.index = index
        self.store_count = store_count
        self.container_count = container_count
        self.token_key = token_key
        #: The clock delegation tokens' expiry is checked against (settable at any time).
        self.token_clock = token_clock
        self.read_wait = read_wait
        self.faults = faults if faults is not None else FaultPlan()
        self.stats: collections.Counter[str] = collections.Counter()
        #: The append rates of the segments (what auto-scaling reads).
        self.rates = rates if rates is not None else RateMeter()
        self._connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._accepting = False  # True from start() until stop(): connections are served
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int]:
        """``(host, port)`` clients connect to (127.0.0.1 for a wildcard bind)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return host, self.port

    @property
    def uri(self) -> str:
        host, port = self.endpoint
        return f"tcp://{host}:{port}"

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Listen (sets :attr:`port` when it was 0)."""
        if self._server is not None:
            raise RuntimeError("the segment store is already started")
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._server = await self._loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        _LOG.info("segment store %d serving on %s", self.index, self.uri)

    async def stop(self, *, abort: bool = False) -> None:
        """Stop listening and close every connection: reads waiting at a tail are answered
        empty (``atTail``) and queued replies written first, unless ``abort`` (a crash: all
        connections reset, nothing more written, uncommitted changes not made durable)."""
        self._accepting = False
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self._connections)
        for connection in connections:
            if abort:
                connection.close(abort=True)
            else:
                connection._cancel_reads(reply=True)
                connection.close()
        await asyncio.wait_for(server.wait_closed(), _STOP_WAIT)
        if connections:  # their connection_lost (which may drop transient segments) has run
            await asyncio.wait([c.lost for c in connections], timeout=_STOP_WAIT)
        if not abort and self.storage.pending:
            self.storage.commit()

    async def __aenter__(self) -> SegmentStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- ownership ----------------------------------------------------------------------------

    def owns(self, segment: str) -> bool:
        """Whether this store owns ``segment``."""
        return self.store_count == 1 or store_index_of(
            segment, self.store_count, self.container_count) == self.index

    # ---- in-process administration (the cluster's SegmentAdmin) -------------------------------

    def create_segment(self, name: str, kind: str = "stream", *, key_length: int = 0) -> bool:
        """Create a segment unless it exists; True if created. Durable on return.
        ``key_length``: a table segment's fixed key length (0: a hash table)."""
        if name in self.storage:
            return False
        self.storage.create(name, kind, key_length=key_length)
        self.storage.commit()
        return True

    def seal_segment(self, name: str) -> bool:
        """Seal a segment if it exists and is open (waking its readers); True if sealed now."""
        segment = self.storage.get(name)
        sealed = segment is not None and self.storage.seal(segment)
        self.storage.commit()
        self.rates.forget(name)
        return sealed

    def delete_segment(self, name: str) -> bool:
        """Delete a segment if it exists; True if deleted."""
        segment = self.storage.get(name)
        if segment is None:
            return False
        self.storage.delete(segment)
        self.storage.commit()
        return True

    def truncate_segment(self, name: str, offset: int) -> None:
        """Truncate a segment at ``offset`` (nothing if it is already truncated further).
        Raises the storage's errors for a missing segment or an offset beyond its end."""
        segment = self.storage.require(name)
        if offset > segment.start_offset:
            self.storage.truncate(segment, offset)
            self.storage.commit()

    def __repr__(self) -> str:
        state = self.uri if self.serving else "stopped"
        return f"<SegmentStore {self.index}/{self.store_count} {state}>"

    def merge_segment(self, target: str, source: str) -> int:
        """Append all of segment ``source`` to ``target`` and delete ``source`` (a transaction
        commit); returns the target's length. A missing source counts as merged already.
        Raises the storage's errors for a missing or sealed target."""
        target_segment = self.storage.require(target)
        source_segment = self.storage.get(source)
        if source_segment is not None:
            self.storage.merge(target_segment, source_segment)
            self.storage.commit()
        return target_segment.length

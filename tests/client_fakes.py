"""In-memory fakes for the segment-client tests (no sockets, no tests of their own).

* :class:`FakeCluster`: the segments (bytes, sealed, start offset, attributes, each writer's
  last event number) shared by its :class:`FakeStore` s, which segment each store owns, and
  which delegation tokens are valid or expired.
* :class:`FakeStore`: a scripted segment store behind one endpoint. By default it behaves like
  Pravega's: SetupAppend/AppendSetup, appends stored and acknowledged (one ``DataAppended`` per
  append, or cumulatively on demand with ``ack_mode="manual"``), appends whose event number is
  not above the writer's stored one deduplicated (acknowledged, not stored), reads with long
  polls at the tail, metadata requests, conditional appends, WrongHost for segments it does
  not own, AuthTokenCheckFailed for bad or expired tokens (with the read-path quirk: the read
  offset in the request id). Rules (:meth:`FakeStore.on`, :meth:`FakeStore.hold`) replace the
  default handling of chosen commands: answer something else, hold them for later, drop the
  connection.
* :class:`FakePool` and :class:`FakeFlow`: the pool interface the clients use
  (``open_flow``, ``open_dedicated_flow``; ``flow_id``, ``send``, ``append``, ``append_event``,
  ``close``). Every flow is its own connection. Replies are delivered on the event loop, in
  order, never from inside ``send``; a pooled flow only gets replies whose request id carries
  its flow id (others are counted in ``pool.unrouted``, as a real pool drops them);
  :meth:`FakeFlow.drop` kills the connection: replies already on their way are delivered, then
  exactly one ``connection_lost``, and nothing after it (nor after ``close()``).
* :class:`FakeLocator` and :class:`FakeTokens`: a segment locator with a cache that can be made
  stale, and a token provider that records its calls.
"""

from __future__ import annotations

import asyncio
import collections
import math
import struct
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from pravega_wire import commands as C
from pravega_wire.appends import Append
from pravega_wire.client._common import RetryPolicy
from pravega_wire.codec import encode
from pravega_wire.errors import ConnectionClosedError, ConnectionFailedError
from pravega_wire.flow import next_flow_id

HELLO = C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION)
NULL = C.NULL_ATTRIBUTE_VALUE
SERVER_MAX_READ = 2 * 1024 * 1024
_HEADER = struct.Struct(">ii")

Endpoint = Tuple[str, int]


def event_record(payload: bytes) -> bytes:
    """The Event record of one payload: 8-byte header + payload."""
    return _HEADER.pack(0, len(payload)) + bytes(payload)


def parse_events(data: bytes) -> List[bytes]:
    """The payloads of the Event records in ``data`` (which must hold whole records)."""
    events, pos = [], 0
    while pos < len(data):
        kind, n = _HEADER.unpack_from(data, pos)
        assert kind == 0 and n >= 0 and pos + 8 + n <= len(data), f"bad record at {pos}"
        events.append(bytes(data[pos + 8:pos + 8 + n]))
        pos += 8 + n
    return events


class FakeSegment:
    def __init__(self, name: str, data: bytes = b""):
        self.name = name
        self.data = bytearray(data)
        self.sealed = False
        self.start_offset = 0
        self.attributes: Dict[uuid.UUID, int] = {}
        self.writers: Dict[uuid.UUID, int] = {}  # writer id -> last stored event number


class FakeCluster:
    """Segments shared by ``stores`` stores at ``("store-<i>", 6000 + i)``; store 0 owns every
    segment unless :meth:`move` says otherwise."""

    def __init__(self, stores: int = 1):
        self.segments: Dict[str, FakeSegment] = {}
        self.endpoints: List[Endpoint] = [(f"store-{i}", 6000 + i) for i in range(stores)]
        self.stores: Dict[Endpoint, FakeStore] = {ep: FakeStore(self, ep) for ep in self.endpoints}
        self.owners: Dict[str, Endpoint] = {}
        #: None: auth off. Otherwise the tokens accepted; ``expired_tokens`` are refused as
        #: expired, any other as invalid.
        self.valid_tokens: Optional[set] = None
        self.expired_tokens: set = set()

    def store(self, index: int = 0) -> "FakeStore":
        return self.stores[self.endpoints[index]]

    def create(self, name: str, data: bytes = b"") -> FakeSegment:
        segment = self.segments[name] = FakeSegment(name, data)
        return segment

    def owner_of(self, name: str) -> Endpoint:
        return self.owners.get(name, self.endpoints[0])

    def move(self, name: str, index: int) -> None:
        self.owners[name] = self.endpoints[index]

    def events(self, name: str) -> List[bytes]:
        return parse_events(bytes(self.segments[name].data))

    def append(self, name: str, data: bytes) -> None:
        """Append raw bytes (another writer) and answer the reads waiting at the tail."""
        self.segments[name].data += data
        self._wake(name)

    def seal(self, name: str) -> None:
        self.segments[name].sealed = True
        self._wake(name)

    def _wake(self, name: str) -> None:
        for store in self.stores.values():
            store.wake_reads(name)

    def token_error(self, token: str) -> Optional[int]:
        if self.valid_tokens is None or token in self.valid_tokens:
            return None
        if token in self.expired_tokens:
            return C.AuthTokenCheckFailed.TOKEN_EXPIRED
        return C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED


class _Session:
    """A writer's append session on one connection (the store's per-connection state)."""

    def __init__(self, last: int):
        self.last = last  # last event number received on this connection
        self.acked = last  # last event number acknowledged on this connection
        self.applied = last  # last event number processed (stored or deduplicated)
        self.request_id = 0


_APPEND_PATH = frozenset({"SetupAppend", "Append", "ConditionalAppend"})


class FakeStore:
    """One segment store; see the module docstring. Held append-path commands (SetupAppend,
    appends) hold back the later ones of the same connection too: they are processed in order,
    as a real store does; other requests may be answered out of order."""

    def __init__(self, cluster: FakeCluster, endpoint: Endpoint):
        self.cluster = cluster
        self.endpoint = endpoint
        self.log: List[Tuple["FakeFlow", Any]] = []  # every command received, in order
        self.rules: List[list] = []  # [kind name, handler, remaining]
        self.held: List[Tuple["FakeFlow", Any]] = []
        self.parked: List[Tuple["FakeFlow", Any]] = []  # reads waiting at the tail
        #: "each": a DataAppended per append; "manual": none until :meth:`send_acks`.
        self.ack_mode = "each"
        #: Caps on the data of successive SegmentRead replies (then unlimited).
        self.read_limits: collections.deque = collections.deque()
        self.deduplicated = 0
        self.violations: List[str] = []

    # ---- scripting ------------------------------------------------------------------------

    def on(self, kind: Any, handler: Callable[["FakeFlow", Any], None],
           times: float = 1) -> None:
        """The next ``times`` commands of ``kind`` (a class, or its name) go to
        ``handler(flow, cmd)`` instead of the default handling (:meth:`process` applies it)."""
        name = kind if isinstance(kind, str) else kind.__name__
        self.rules.append([name, handler, times])

    def hold(self, kind: Any, times: float = math.inf) -> None:
        """Keep the next ``times`` commands of ``kind`` unprocessed in ``held``."""
        self.on(kind, self._hold, times)

    def _hold(self, flow: "FakeFlow", cmd: Any) -> None:
        self.held.append((flow, cmd))

    def clear_rules(self) -> None:
        self.rules.clear()

    def release(self) -> None:
        """Process the held commands, in order (replies to dead flows go nowhere)."""
        held, self.held = self.held, []
        for flow, cmd in held:
            self.process(flow, cmd)

    def answer(self, flow: "FakeFlow", reply: Any) -> None:
        flow.deliver(reply)

    def send_acks(self) -> None:
        """One cumulative DataAppended per session with unacknowledged appends."""
        for flow in {flow for flow, _ in self.log}:
            for (segment, writer_id), session in flow.sessions.items():
                if session.applied > session.acked:
                    length = len(self.cluster.segments[segment].data) if (
                        segment in self.cluster.segments) else -1
                    flow.deliver(C.DataAppended(session.request_id, writer_id, session.applied,
                                                session.acked, length))
                    session.acked = session.applied

    def wake_reads(self, name: str) -> None:
        parked, self.parked = self.parked, []
        for flow, cmd in parked:
            if cmd.segment == name:
                self.process(flow, cmd)
            else:
                self.parked.append((flow, cmd))

    def cancel_parked(self) -> None:
        """Answer every waiting read with an empty SegmentRead (atTail, not end of segment), as
        a store does when it cancels its long polls."""
        parked, self.parked = self.parked, []
        for flow, cmd in parked:
            flow.deliver(C.SegmentRead(cmd.segment, cmd.offset, True, False, b"",
                                       cmd.request_id))

    # ---- receiving ------------------------------------------------------------------------

    def received(self, flow: "FakeFlow", cmd: Any) -> None:
        self.log.append((flow, cmd))
        name = type(cmd).__name__
        if name in _APPEND_PATH and any(f is flow and type(c).__name__ in _APPEND_PATH
                                        for f, c in self.held):
            # A connection's appends are processed in order: queue behind the held ones
            # (counting against a hold rule for this kind, if there is one).
            for rule in self.rules:
                if rule[0] == name and rule[2] > 0 and rule[1] == self._hold:
                    rule[2] -= 1
                    break
            self.held.append((flow, cmd))
            return
        for rule in self.rules:
            if rule[0] == name and rule[2] > 0:
                rule[2] -= 1
                rule[1](flow, cmd)
                return
        self.process(flow, cmd)

    def process(self, flow: "FakeFlow", cmd: Any) -> None:
        """The default handling of ``cmd``, as a Pravega segment store would."""
        handler = getattr(self, "_on_" + type(cmd).__name__, None)
        if handler is None:
            self.violations.append(f"unexpected {cmd!r}")
            return
        handler(flow, cmd)

    def _checks(self, flow: "FakeFlow", cmd: Any, segment: str, *,
                auth_request_id: Optional[int] = None,
                must_exist: bool = True) -> Optional[FakeSegment]:
        """Token, ownership and existence checks; None if a failure reply was sent."""
        code = self.cluster.token_error(getattr(cmd, "delegation_token", ""))
        if code is not None:
            rid = cmd.request_id if auth_request_id is None else auth_request_id
            flow.deliver(C.AuthTokenCheckFailed(rid, "", code))
            return None
        if self.cluster.owner_of(segment) != self.endpoint:
            flow.deliver(C.WrongHost(cmd.request_id, segment, "", ""))
            return None
        seg = self.cluster.segments.get(segment)
        if seg is None and must_exist:
            flow.deliver(C.NoSuchSegment(cmd.request_id, segment, "",
                                         getattr(cmd, "offset", -1)))
        return seg

    # -- appends

    def _on_SetupAppend(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment)
        if seg is None:
            return
        if seg.sealed:
            flow.deliver(C.SegmentIsSealed(cmd.request_id, cmd.segment, "", -1))
            return
        last = seg.writers.get(cmd.writer_id, NULL)
        session = flow.sessions[(cmd.segment, cmd.writer_id)] = _Session(last)
        session.request_id = cmd.request_id
        flow.deliver(C.AppendSetup(cmd.request_id, cmd.segment, cmd.writer_id, last))

    def _on_Append(self, flow, append):
        key = (append.segment, append.writer_id)
        session = flow.sessions.get(key)
        if session is None:
            self.violations.append(f"append before SetupAppend: {append!r}")
            flow.drop()
            return
        if append.event_number <= session.last:
            self.violations.append(f"event number {append.event_number} not above "
                                   f"{session.last} on this connection")
            flow.deliver(C.InvalidEventNumber(append.writer_id, append.request_id, "",
                                              append.event_number))
            flow.drop()
            return
        previous, session.last = session.last, append.event_number
        session.request_id = append.request_id
        if self.cluster.owner_of(append.segment) != self.endpoint:
            flow.deliver(C.WrongHost(append.request_id, append.segment, "", ""))
            return
        seg = self.cluster.segments.get(append.segment)
        if seg is None:
            flow.deliver(C.NoSuchSegment(append.request_id, append.segment, "", -1))
            return
        if seg.sealed:
            flow.deliver(C.SegmentIsSealed(append.request_id, append.segment, "",
                                           append.event_number))
            return
        stored = seg.writers.get(append.writer_id, NULL)
        if append.event_number <= stored:
            self.deduplicated += 1  # a late copy of what is stored already
        elif stored != previous:
            # Stored conditionally on the writer's previous event number on this connection
            # (Java: an attribute update ReplaceIfEquals): an append after one that failed
            # (WrongHost, ...) is refused instead of leaving a gap.
            flow.deliver(C.InvalidEventNumber(append.writer_id, append.request_id, "",
                                              append.event_number))
            flow.drop()
            return
        else:
            seg.data += append.data
            seg.writers[append.writer_id] = append.event_number
            self.cluster._wake(append.segment)
        session.applied = append.event_number
        if self.ack_mode == "each":
            flow.deliver(C.DataAppended(append.request_id, append.writer_id,
                                        append.event_number, session.acked, len(seg.data)))
            session.acked = append.event_number

    def _on_ConditionalAppend(self, flow, cmd):
        matches = [(key, s) for key, s in flow.sessions.items() if key[1] == cmd.writer_id]
        if not matches:
            self.violations.append(f"conditional append before SetupAppend: {cmd!r}")
            flow.drop()
            return
        (segment, _), session = matches[0]
        seg = self.cluster.segments.get(segment)
        if seg is None:
            flow.deliver(C.NoSuchSegment(cmd.request_id, segment, "", -1))
            return
        if seg.sealed:
            flow.deliver(C.SegmentIsSealed(cmd.request_id, segment, "", cmd.event_number))
            return
        if cmd.event_number <= session.last:
            flow.deliver(C.InvalidEventNumber(cmd.writer_id, cmd.request_id, "",
                                              cmd.event_number))
            flow.drop()
            return
        if cmd.expected_offset != len(seg.data):
            flow.deliver(C.ConditionalCheckFailed(cmd.writer_id, cmd.event_number,
                                                  cmd.request_id))
            return
        seg.data += event_record(cmd.event.data)
        seg.writers[cmd.writer_id] = cmd.event_number
        previous, session.last = session.last, cmd.event_number
        flow.deliver(C.DataAppended(cmd.request_id, cmd.writer_id, cmd.event_number, previous,
                                    len(seg.data)))
        self.cluster._wake(segment)

    def _on_KeepAlive(self, flow, cmd):
        return  # the pool swallows the echo

    # -- reads

    def _on_ReadSegment(self, flow, cmd):
        # Quirk of the real store: a failed token check on a read reports the offset where
        # the request id belongs.
        seg = self._checks(flow, cmd, cmd.segment, auth_request_id=cmd.offset)
        if seg is None:
            return
        if cmd.offset < seg.start_offset:
            flow.deliver(C.SegmentIsTruncated(cmd.request_id, cmd.segment, seg.start_offset, "",
                                              cmd.offset))
            return
        length = len(seg.data)
        if cmd.offset >= length:
            if seg.sealed:
                flow.deliver(C.SegmentIsSealed(cmd.request_id, cmd.segment, "", cmd.offset))
            else:
                self.parked.append((flow, cmd))
            return
        size = min(SERVER_MAX_READ, max(8, cmd.suggested_length))
        if self.read_limits:
            size = min(size, self.read_limits.popleft())
        data = bytes(seg.data[cmd.offset:cmd.offset + size])
        end = cmd.offset + len(data) >= length
        flow.deliver(C.SegmentRead(cmd.segment, cmd.offset, end, end and seg.sealed,
                                   memoryview(data) if len(data) >= 4096 else data,
                                   cmd.request_id))

    # -- metadata

    def _on_GetStreamSegmentInfo(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment_name, must_exist=False)
        if seg is None:
            if self.cluster.owner_of(cmd.segment_name) == self.endpoint and \
                    self.cluster.token_error(cmd.delegation_token) is None:
                flow.deliver(C.StreamSegmentInfo(cmd.request_id, cmd.segment_name, False, True,
                                                 True, 0, 0, 0))
            return
        flow.deliver(C.StreamSegmentInfo(cmd.request_id, cmd.segment_name, True, seg.sealed,
                                         False, 1234, len(seg.data), seg.start_offset))

    def _on_GetSegmentAttribute(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment_name)
        if seg is not None:
            flow.deliver(C.SegmentAttribute(cmd.request_id,
                                            seg.attributes.get(cmd.attribute_id, NULL)))

    def _on_UpdateSegmentAttribute(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment_name)
        if seg is None:
            return
        current = seg.attributes.get(cmd.attribute_id, NULL)
        success = current == cmd.expected_value
        if success:
            seg.attributes[cmd.attribute_id] = cmd.new_value
        flow.deliver(C.SegmentAttributeUpdated(cmd.request_id, success))

    def _on_CreateSegment(self, flow, cmd):
        existing = self._checks(flow, cmd, cmd.segment, must_exist=False)
        if existing is not None:
            flow.deliver(C.SegmentAlreadyExists(cmd.request_id, cmd.segment, ""))
        elif (self.cluster.owner_of(cmd.segment) == self.endpoint
              and self.cluster.token_error(cmd.delegation_token) is None):
            self.cluster.create(cmd.segment)
            flow.deliver(C.SegmentCreated(cmd.request_id, cmd.segment))

    def _on_SealSegment(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment)
        if seg is None:
            return
        if seg.sealed:
            flow.deliver(C.SegmentIsSealed(cmd.request_id, cmd.segment, "", -1))
            return
        self.cluster.seal(cmd.segment)
        flow.deliver(C.SegmentSealed(cmd.request_id, cmd.segment))

    def _on_TruncateSegment(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment)
        if seg is None:
            return
        if cmd.truncation_offset < seg.start_offset:
            flow.deliver(C.SegmentIsTruncated(cmd.request_id, cmd.segment, seg.start_offset, "",
                                              cmd.truncation_offset))
        elif cmd.truncation_offset > len(seg.data):
            flow.deliver(C.ErrorMessage(cmd.request_id, cmd.segment,
                                        "truncation offset beyond the end of the segment",
                                        C.ErrorMessage.ILLEGAL_ARGUMENT_EXCEPTION))
        else:
            seg.start_offset = cmd.truncation_offset
            flow.deliver(C.SegmentTruncated(cmd.request_id, cmd.segment))

    def _on_DeleteSegment(self, flow, cmd):
        seg = self._checks(flow, cmd, cmd.segment)
        if seg is not None:
            del self.cluster.segments[cmd.segment]
            flow.deliver(C.SegmentDeleted(cmd.request_id, cmd.segment))


class FakeFlow:
    """One flow, on a connection of its own; see the module docstring."""

    def __init__(self, pool: "FakePool", endpoint: Endpoint, flow_id: int, listener: Any,
                 dedicated: bool):
        self.pool = pool
        self.endpoint = endpoint
        self.flow_id = flow_id
        self.listener = listener
        self.dedicated = dedicated
        self.store = pool.cluster.stores[endpoint]
        self.sent: List[Any] = []  # every command and Append, in order
        self.closed = False  # by its owner
        self.dying = False  # the connection broke: sends fail, connection_lost is on its way
        self.lost = False  # connection_lost delivered
        self.muted = False  # replies are lost (see mute)
        self.sessions: Dict[Tuple[str, uuid.UUID], _Session] = {}
        self.fast_appends = 0
        #: Make the next send fail the way a real pool's does when its encoder breaks the
        #: connection: connection_lost called from inside the send, then ConnectionFailedError.
        self.break_on_send = False
        if pool.fast_path:
            self.append_event = self._append_event

    def __repr__(self) -> str:
        return f"<FakeFlow {self.flow_id} to {self.endpoint} sent={len(self.sent)}>"

    @property
    def is_open(self) -> bool:
        return not (self.closed or self.dying or self.lost)

    def _check(self) -> None:
        if self.closed:
            raise ConnectionClosedError(f"flow {self.flow_id} is closed")
        if self.dying or self.lost:
            raise ConnectionFailedError(f"the connection of flow {self.flow_id} is gone")
        if self.break_on_send:
            self.break_on_send = False
            self.dying = self.lost = True
            self.listener.connection_lost(ConnectionFailedError("broken by its encoder (fake)"))
            raise ConnectionFailedError(f"flow {self.flow_id}: the connection broke")

    def send(self, cmd: Any) -> None:
        assert isinstance(cmd, C.Command), cmd
        encode(cmd)  # what cannot be encoded fails here, as with a real pool
        self._check()
        self.sent.append(cmd)
        self.store.received(self, cmd)

    def append(self, append: Any) -> None:
        assert type(append) is Append, append
        self._check()
        self.sent.append(append)
        self.store.received(self, append)

    def _append_event(self, segment: str, writer_id: uuid.UUID, event_number: int,
                      payload: bytes, request_id: int) -> None:
        self.fast_appends += 1
        self.append(Append(segment, writer_id, event_number, 1, event_record(payload), None,
                           request_id))

    def close(self) -> None:
        self.closed = True

    def mute(self) -> None:
        """From now on the store's replies are lost (a connection about to break)."""
        self.muted = True

    def deliver(self, reply: Any) -> None:
        """A reply from the store, delivered on the loop (nothing once the connection broke)."""
        if not (self.dying or self.lost or self.muted):
            self.pool.loop.call_soon(self._dispatch, reply)

    def _dispatch(self, reply: Any) -> None:
        if self.closed or self.lost:
            return
        if (not self.dedicated and type(reply) is not C.Hello
                and reply.request_id >> 32 != self.flow_id):
            self.pool.unrouted.append(reply)
            return
        self.pool.delivered.append((self, reply))
        self.listener.reply_received(reply)

    def drop(self, exc: Optional[BaseException] = None) -> None:
        """The connection dies: replies already sent arrive, then one connection_lost."""
        if self.closed or self.dying or self.lost:
            return
        self.dying = True
        self.pool.loop.call_soon(self._lose, exc or ConnectionFailedError("connection reset "
                                                                          "(fake)"))

    def _lose(self, exc: BaseException) -> None:
        if self.closed or self.lost:
            return
        self.lost = True
        self.listener.connection_lost(exc)

    # -- what it sent

    def sent_of(self, kind: Any) -> List[Any]:
        return [c for c in self.sent if type(c) is kind]

    @property
    def appends(self) -> List[Any]:
        return self.sent_of(Append)


class FakePool:
    """The pool interface over a :class:`FakeCluster`. ``fast_path=False`` gives flows without
    ``append_event`` (only ``append``); ``hello`` is the Hello every new flow gets first (or
    none when False)."""

    def __init__(self, cluster: FakeCluster, *, fast_path: bool = True, hello: Any = True):
        self.cluster = cluster
        self.fast_path = fast_path
        self.hello = hello
        self.loop = asyncio.get_running_loop()
        self.flows: List[FakeFlow] = []
        self.connects: List[Tuple[Endpoint, bool]] = []  # every attempt: (endpoint, dedicated)
        self.refusals: Dict[Optional[Endpoint], float] = {}
        self.refusal_error: type = ConnectionFailedError
        self.gate: Optional[asyncio.Event] = None  # set: connects wait for it
        self.unrouted: List[Any] = []
        self.delivered: List[Tuple[FakeFlow, Any]] = []
        #: Kill the next flow as it is handed over (its connection_lost comes before open_flow
        #: returns), as a connection dying at that moment does.
        self.lose_next_open = False

    def refuse(self, times: float = math.inf, endpoint: Optional[Endpoint] = None,
               error: type = ConnectionFailedError) -> None:
        """Refuse the next ``times`` connects (to ``endpoint``, or anywhere) with ``error``."""
        self.refusals[endpoint] = times
        self.refusal_error = error

    async def open_flow(self, endpoint: Endpoint, listener: Any) -> FakeFlow:
        return await self._open(endpoint, listener, dedicated=False)

    async def open_dedicated_flow(self, endpoint: Endpoint, listener: Any) -> FakeFlow:
        return await self._open(endpoint, listener, dedicated=True)

    async def _open(self, endpoint: Endpoint, listener: Any, dedicated: bool) -> FakeFlow:
        assert callable(listener.reply_received) and callable(listener.connection_lost)
        endpoint = tuple(endpoint)
        self.connects.append((endpoint, dedicated))
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # connecting takes a trip round the loop
        for key in (endpoint, None):
            if self.refusals.get(key, 0) > 0:
                self.refusals[key] -= 1
                raise self.refusal_error(f"connection to {endpoint} refused (fake)")
        if endpoint not in self.cluster.stores:
            raise ConnectionFailedError(f"no store at {endpoint} (fake)")
        flow = FakeFlow(self, endpoint, 0 if dedicated else next_flow_id(), listener, dedicated)
        self.flows.append(flow)
        if self.hello:
            flow.deliver(HELLO if self.hello is True else self.hello)
        if self.lose_next_open:
            self.lose_next_open = False
            flow.dying = flow.lost = True
            listener.connection_lost(ConnectionFailedError("lost while opening (fake)"))
        return flow

    @property
    def last_flow(self) -> FakeFlow:
        return self.flows[-1]

    def open_flows(self) -> List[FakeFlow]:
        return [f for f in self.flows if f.is_open]


class FakeLocator:
    """Resolves a segment to its owner in ``cluster`` and caches the answer; ``cache`` can be
    pre-filled with a stale endpoint. Records lookups and invalidations."""

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self.cache: Dict[str, Endpoint] = {}
        self.lookups: List[str] = []
        self.invalidations: List[str] = []

    async def get_endpoint(self, segment: str) -> Endpoint:
        self.lookups.append(segment)
        endpoint = self.cache.get(segment)
        if endpoint is None:
            endpoint = self.cache[segment] = self.cluster.owner_of(segment)
        return endpoint

    def invalidate(self, segment: str) -> None:
        self.invalidations.append(segment)
        self.cache.pop(segment, None)


class FakeTokens:
    """A token provider handing out ``tokens`` in turn: the next one each time a fresh token
    is asked for (``expired=True``). Records every call as ``(segment, expired)``."""

    def __init__(self, *tokens: str):
        self.tokens = list(tokens)
        self.index = 0
        self.calls: List[Tuple[str, bool]] = []

    async def __call__(self, segment: str, expired: bool) -> str:
        self.calls.append((segment, expired))
        if expired and self.index + 1 < len(self.tokens):
            self.index += 1
        return self.tokens[self.index]


#: A quick retry policy for the client tests: 5 attempts, waits of 1 to 4 ms.
FAST_RETRY = RetryPolicy(initial_delay=0.001, multiplier=2.0, max_delay=0.004, attempts=5)


async def settle(rounds: int = 20) -> None:
    """Let scheduled callbacks and tasks run (a bounded number of loop iterations)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], what: str = "condition",
                rounds: int = 10_000) -> None:
    """Run the loop until ``predicate()`` holds; fail after ``rounds`` short sleeps (a bound
    against hanging, not a timing assertion)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.0005)
    raise AssertionError(f"gave up waiting for {what}")

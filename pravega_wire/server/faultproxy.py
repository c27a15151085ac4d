"""A TCP fault proxy: sits between clients and a segment store and breaks the traffic on demand.

::

    async with FaultProxy(store.endpoint, seed=7) as proxy:
        ...  # clients connect to proxy.endpoint instead of the store
        proxy.reset()                                   # every connection, now (TCP RST)
        proxy.reset_after(1000, direction=UPSTREAM)     # each live connection, 1000 bytes on
        proxy.reset_in_frame(direction=DOWNSTREAM, commands={"DataAppended"})
        proxy.reset_before_frame(direction=UPSTREAM, commands={"AppendBlockEnd"})
        proxy.drop_frames(direction=DOWNSTREAM, commands={"SegmentRead"}, times=2)
        proxy.stall()        # half-open: sockets stay open, nothing is forwarded, nothing read
        proxy.resume()
        proxy.throttle(20_000, direction=DOWNSTREAM)   # bytes per second
        proxy.unthrottle()
        proxy.refuse(times=3)                           # accept, then reset, new connections

Every connection is forwarded in both directions, *frame-aware*: the proxy parses the 8-byte
WireCommand headers as they pass, so that a fault can hit a given kind of frame: just before it
(nothing of it forwarded), inside it (a cut point drawn from the proxy's seeded random
generator: header and payload alike), or all of it (dropped silently while the connection stays
up). While a frame fault is armed for a direction, the bytes of an incomplete header (at most 7)
are held until the header is complete; otherwise everything is forwarded as it comes. A stream
that stops making sense as frames (a negative length or an unknown type code) is forwarded
verbatim from there on.

Frame faults are *armed*: each call adds a trigger that the next matching frames consume
(``times`` of them; ``None`` for every one), optionally only with ``probability``, and
optionally only on one connection. ``reset_after`` arms a byte budget on each connection that
is live at the time. ``stall`` and ``throttle`` apply to live and new connections until undone.
With the same ``seed`` and the same traffic, the same faults happen at the same bytes.

:attr:`FaultProxy.stats` counts connections, bytes and frames forwarded, and each fault fired
(``"reset"``, ``"reset_after"``, ``"reset_in_frame"``, ``"reset_before_frame"``,
``"dropped_frames"``, ``"refused"``, ``"stalls"``, ``"throttles"``); a frame fault is also
counted by action, direction and command (``"reset_before_frame upstream AppendBlockEnd"``)
when it is carried out.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import struct
from collections.abc import Iterable
from typing import Any, Optional

from .. import commands as C

__all__ = ["FaultProxy", "ProxiedConnection", "UPSTREAM", "DOWNSTREAM", "BOTH"]

_LOG = logging.getLogger("pravega_wire.server.faultproxy")

#: Client to store.
UPSTREAM = "upstream"
#: Store to client.
DOWNSTREAM = "downstream"
#: Both directions.
BOTH = "both"
_DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)

_HEADER = struct.Struct(">ii")
_LINGER_RESET = struct.pack("ii", 1, 0)
#: Bytes held by one direction before the proxy stops reading its source.
_BACKLOG_LIMIT = 256 * 1024
#: A throttled direction forwards at most this much of a second's allowance at once.
_BURST_SECONDS = 0.02
_NAMES = {code: cls.__name__ for code, cls in C.COMMAND_TYPES.items()}


def _check_direction(direction: str) -> str:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, not {direction!r}")
    return direction


def _covers(direction: str, half: str) -> bool:
    return direction == BOTH or direction == half


def _hard_close(transport: Optional[asyncio.BaseTransport]) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    transport.abort()


class _Trigger:
    """An armed frame fault (``action``: reset_before_frame, reset_in_frame, drop)."""

    __slots__ = ("action", "direction", "commands", "times", "probability", "connection",
                 "fired")

    def __init__(self, action: str, direction: str, commands: Optional[frozenset],
                 times: Optional[int], probability: float,
                 connection: Optional["ProxiedConnection"]):
        self.action = action
        self.direction = direction
        self.commands = commands
        self.times = times
        self.probability = probability
        self.connection = connection
        self.fired = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class _Half:
    """One direction of a proxied connection: parses frame headers, applies faults, forwards."""

    def __init__(self, connection: "ProxiedConnection", name: str):
        self.connection = connection
        self.proxy = connection.proxy
        self.name = name
        self.source: Optional[asyncio.Transport] = None
        self.sink: Optional[asyncio.Transport] = None
        self.forwarded = 0
        self.frames = 0
        self.budget: Optional[int] = None  # bytes left before a reset_after fires
        self._header = bytearray()
        self._header_sent = 0  # bytes of that header already forwarded
        self._left = 0  # payload bytes of the current frame still to come
        self._cut: Optional[int] = None  # bytes of the current frame to forward, then reset
        self._cut_detail = ""
        self._drop = False  # the current frame is being swallowed
        self._raw = False  # framing lost: forward verbatim
        self._backlog: collections.deque = collections.deque()
        self._backlog_bytes = 0
        self._pauses: set = set()
        self._reading = True
        self._tokens = 0.0
        self._stamp = 0.0
        self._pump_handle: Optional[asyncio.TimerHandle] = None

    # ---- reading control ------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        self._pauses.add(reason)
        self._update_reading()

    def unpause(self, reason: str) -> None:
        self._pauses.discard(reason)
        self._update_reading()

    def _update_reading(self) -> None:
        source = self.source
        if source is None or source.is_closing():
            return
        want = not self._pauses
        if want != self._reading:
            self._reading = want
            if want:
                source.resume_reading()
            else:
                source.pause_reading()

    # ---- data path -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.connection.closed:
            return
        proxy = self.proxy
        if (self.sink is None or self._backlog or self.name in proxy._stalled
                or self.name in proxy._rates):
            self._backlog.append(memoryview(data))
            self._backlog_bytes += len(data)
            if self._backlog_bytes >= _BACKLOG_LIMIT:
                self.pause("backlog")
            self.pump()
            return
        self._process(memoryview(data))

    def pump(self) -> None:
        """Forward held bytes as far as stalls and throttles allow."""
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        proxy = self.proxy
        if self.connection.closed or self.sink is None or self.name in proxy._stalled:
            return
        backlog = self._backlog
        rate = proxy._rates.get(self.name)
        if rate is None:
            while backlog and not self.connection.closed:
                chunk = backlog.popleft()
                self._backlog_bytes -= len(chunk)
                self._process(chunk)
        else:
            loop = proxy._loop
            now = loop.time()
            burst = max(1.0, rate * _BURST_SECONDS)
            self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            while backlog and self._tokens >= 1 and not self.connection.closed:
                chunk = backlog[0]
                n = min(len(chunk), int(self._tokens))
                if n == len(chunk):
                    backlog.popleft()
                else:
                    backlog[0] = chunk[n:]
                    chunk = chunk[:n]
                self._backlog_bytes -= n
                self._tokens -= n
                self._process(chunk)
            if backlog and not self.connection.closed:
                wanted = min(len(backlog[0]), burst) - self._tokens
                self._pump_handle = loop.call_later(max(0.001, wanted / rate), self.pump)
        if self._backlog_bytes < _BACKLOG_LIMIT:
            self.unpause("backlog")

    def _process(self, data: memoryview) -> None:
        """Parse and forward ``data``, firing faults on the frames that pass."""
        out: list = []
        pos, n = 0, len(data)
        while pos < n:
            if self._raw:
                out.append(data[pos:])
                break
            if self._left:
                take = min(self._left, n - pos)
                if self._cut is not None:
                    take = min(take, self._cut)
                if not self._drop:
                    out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if self._cut is not None:
                    self._cut -= take
                    if self._cut == 0:
                        self._write(out)
                        self.connection._fault_reset("reset_in_frame", self._cut_detail)
                        return
                continue
            take = min(8 - len(self._header), n - pos)
            self._header += data[pos:pos + take]
            pos += take
            if not self.proxy._watching(self):  # no frame fault can hit it: no need to wait
                out.append(bytes(self._header[self._header_sent:]))  # held bytes too
                self._header_sent = len(self._header)
            if len(self._header) < 8:
                break
            header = bytes(self._header)
            sent = self._header_sent
            self._header.clear()
            self._header_sent = 0
            type_code, length = _HEADER.unpack(header)
            name = _NAMES.get(type_code)
            if name is None or length < 0:
                self._raw = True
                out.append(header[sent:])
                continue
            self.frames += 1
            self.proxy.stats["frames_up" if self.name == UPSTREAM else "frames_down"] += 1
            self._drop = False
            self._cut = None
            # A frame whose header went out already cannot be faulted exactly: a trigger
            # armed meanwhile waits for the next one.
            action = self.proxy._fire(self, name) if not sent else None
            detail = f"{action} {self.name} {name}"
            if action == "reset_before_frame":
                self._write(out)
                self.connection._fault_reset(action, detail)
                return
            if action == "drop":
                self.proxy.stats["dropped_frames"] += 1
                self.proxy.stats[detail] += 1
                self._drop = True
                self._left = length
                continue
            if action == "reset_in_frame":
                cut = self.proxy._rng.randint(1, 8 + length - 1)
                if cut <= 8:
                    out.append(header[:cut])
                    self._write(out)
                    self.connection._fault_reset(action, detail)
                    return
                self._cut = cut - 8
                self._cut_detail = detail
            out.append(header[sent:])
            self._left = length
        self._write(out)

    def _write(self, out: list) -> None:
        sink = self.sink
        if not out or sink is None or self.connection.closed or sink.is_closing():
            return
        stats = self.proxy.stats
        key = "bytes_up" if self.name == UPSTREAM else "bytes_down"
        for piece in out:
            if sink.is_closing():  # a write failed: connection_lost follows
                return
            size = len(piece)
            if self.budget is not None and size >= self.budget:
                if self.budget:
                    sink.write(piece[:self.budget])
                    self.forwarded += self.budget
                    stats[key] += self.budget
                self.budget = None
                self.connection._fault_reset("reset_after")
                return
            if self.budget is not None:
                self.budget -= size
            sink.write(piece)
            self.forwarded += size
            stats[key] += size

    def close(self) -> None:
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        self._backlog.clear()
        self._backlog_bytes = 0


class _Side(asyncio.Protocol):
    """The asyncio protocol of one socket of a proxied connection."""

    def __init__(self, connection: "ProxiedConnection", inbound: _Half, outbound: _Half):
        self.connection = connection
        self.inbound = inbound  # what this socket receives
        self.outbound = outbound  # what is written to this socket
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inbound.source = transport
        self.outbound.sink = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self is self.connection.client:  # read nothing until the store is connected
            self.inbound.pause("connecting")

    def data_received(self, data: bytes) -> None:
        self.inbound.receive(data)

    def eof_received(self) -> bool:
        self.connection.close()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if exc is None:
            self.connection.close()
        else:
            self.connection.reset()

    def pause_writing(self) -> None:
        self.outbound.pause("sink")

    def resume_writing(self) -> None:
        self.outbound.unpause("sink")


class ProxiedConnection:
    """One client connection and its connection to the store."""

    def __init__(self, proxy: "FaultProxy"):
        self.proxy = proxy
        self.closed = False
        self.upstream = _Half(self, UPSTREAM)
        self.downstream = _Half(self, DOWNSTREAM)
        self.client = _Side(self, self.upstream, self.downstream)
        self.server = _Side(self, self.downstream, self.upstream)

    @property
    def halves(self) -> tuple:
        return (self.upstream, self.downstream)

    def _wire(self) -> None:
        """Both sockets are connected: start forwarding."""
        proxy = self.proxy
        for half in self.halves:
            if half.name in proxy._stalled:
                half.pause("stall")
            half._stamp = proxy._loop.time()
        self.upstream.unpause("connecting")
        for half in self.halves:
            half.pump()

    def reset(self) -> None:
        """Reset both sockets now (RST)."""
        if self.closed:
            return
        self.closed = True
        for half in self.halves:
            half.close()
        _hard_close(self.client.transport)
        _hard_close(self.server.transport)
        self.proxy._forget(self)

    def close(self) -> None:
        """Close both sockets after what was forwarded so far is written (FIN)."""
        if self.closed:
            return
        self.closed = True
        for half in self.halves:
            half.close()
        for side in (self.client, self.server):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self.proxy._forget(self)

    def _fault_reset(self, kind: str, detail: Optional[str] = None) -> None:
        if self.closed:
            return
        self.proxy.stats[kind] += 1
        if detail is not None:
            self.proxy.stats[detail] += 1
        _LOG.info("fault proxy: %s on %r", kind, self)
        self.reset()

    def __repr__(self) -> str:
        return (f"<ProxiedConnection up={self.upstream.forwarded}B "
                f"down={self.downstream.forwarded}B{' closed' if self.closed else ''}>")


class FaultProxy:
    """Listens on ``host:port`` (0: any free port) and forwards every connection to ``target``
    (``(host, port)``), applying the faults programmed on it. ``seed`` makes its random choices
    (cut points, probabilities) reproducible. ``connect_timeout`` bounds the connection to the
    target; a client whose connection cannot be made is reset."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0, connect_timeout: float = 5.0):
        self.target = target
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._rng = random.Random(seed)
        self.stats: collections.Counter[str] = collections.Counter()
        self._connections: set[ProxiedConnection] = set()
        self._connecting: set[asyncio.Task] = set()
        self._triggers: list[_Trigger] = []
        self._refuse: Optional[int] = 0  # new connections still to refuse (None: all)
        self._stalled: set[str] = set()
        self._rates: dict[str, float] = {}
        self._server: Optional[asyncio.AbstractServer] = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def connections(self) -> list[ProxiedConnection]:
        """The live proxied connections."""
        return list(self._connections)

    async def start(self) -> "FaultProxy":
        if self._server is not None:
            raise RuntimeError("the fault proxy is already started")
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and reset every connection. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connecting):
            task.cancel()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for connection in list(self._connections):
            connection.reset()
        if server is not None:
            await server.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> "FaultProxy":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    def retarget(self, target: tuple[str, int]) -> None:
        """Forward new connections to ``target`` (live ones are not moved)."""
        self.target = target

    # ---- faults -------------------------------------------------------------------------------

    def reset(self) -> int:
        """Reset every live connection now; returns how many."""
        connections = list(self._connections)
        for connection in connections:
            connection._fault_reset("reset")
        return len(connections)

    def reset_after(self, nbytes: int, *, direction: str = BOTH) -> int:
        """On each live connection, reset once ``nbytes`` more bytes were forwarded in
        ``direction`` (counted per direction when BOTH); returns how many connections."""
        _check_direction(direction)
        if type(nbytes) is not int or nbytes < 0:
            raise ValueError(f"nbytes must be an int >= 0, not {nbytes!r}")
        connections = list(self._connections)
        for connection in connections:
            for half in connection.halves:
                if _covers(direction, half.name):
                    half.budget = nbytes
        if nbytes == 0:
            for connection in connections:
                connection._fault_reset("reset_after")
        return len(connections)

    def reset_before_frame(self, *, direction: str = BOTH,
                           commands: Optional[Iterable[str]] = None, times: Optional[int] = 1,
                           probability: float = 1.0,
                           connection: Optional[ProxiedConnection] = None) -> None:
        """Reset the connection at the boundary before the next matching frame (nothing of it
        forwarded): e.g. before an ``AppendBlockEnd`` upstream (the append is never applied)
        or before a ``DataAppended`` downstream (applied, never acknowledged)."""
        self._arm("reset_before_frame", direction, commands, times, probability, connection)

    def reset_in_frame(self, *, direction: str = BOTH, commands: Optional[Iterable[str]] = None,
                       times: Optional[int] = 1, probability: float = 1.0,
                       connection: Optional[ProxiedConnection] = None) -> None:
        """Forward part of the next matching frame (at least one byte, not all of it: the cut
        point is drawn from the seeded generator), then reset the connection."""
        self._arm("reset_in_frame", direction, commands, times, probability, connection)

    def drop_frames(self, *, direction: str = BOTH, commands: Optional[Iterable[str]] = None,
                    times: Optional[int] = 1, probability: float = 1.0,
                    connection: Optional[ProxiedConnection] = None) -> None:
        """Swallow the next matching frames whole; the connection stays up (the peer never
        learns: only its timeouts can)."""
        self._arm("drop", direction, commands, times, probability, connection)

    def refuse(self, times: Optional[int] = 1) -> None:
        """Reset the next ``times`` new connections as soon as they are accepted (``None``:
        every one until :meth:`clear`)."""
        if times is not None and (type(times) is not int or times < 0):
            raise ValueError(f"times must be an int >= 0 or None, not {times!r}")
        self._refuse = times

    def stall(self, *, direction: str = BOTH) -> None:
        """Stop forwarding in ``direction`` on every connection, live and new: the sockets stay
        open and nothing more is read from them (a half-open peer) until :meth:`resume`."""
        _check_direction(direction)
        self.stats["stalls"] += 1
        for name in (UPSTREAM, DOWNSTREAM):
            if _covers(direction, name):
                self._stalled.add(name)
        for connection in list(self._connections):
            for half in connection.halves:
                if half.name in self._stalled:
                    half.pause("stall")

    def resume(self, *, direction: str = BOTH) -> None:
        """Undo :meth:`stall`: forward what was held and read again."""
        _check_direction(direction)
        for name in (UPSTREAM, DOWNSTREAM):
            if _covers(direction, name):
                self._stalled.discard(name)
        for connection in list(self._connections):
            for half in connection.halves:
                if half.name not in self._stalled:
                    half.unpause("stall")
                    half.pump()

    def throttle(self, bytes_per_second: float, *, direction: str = BOTH) -> None:
        """Forward at most ``bytes_per_second`` per connection in ``direction`` (live and new
        connections) until :meth:`unthrottle`."""
        _check_direction(direction)
        if isinstance(bytes_per_second, bool) or not isinstance(bytes_per_second, (int, float)) \
                or not 0 < bytes_per_second < float("inf"):
            raise ValueError(f"bytes_per_second must be positive, not {bytes_per_second!r}")
        self.stats["throttles"] += 1
        now = self._loop.time() if self._loop is not None else 0.0
        for name in (UPSTREAM, DOWNSTREAM):
            if _covers(direction, name):
                self._rates[name] = float(bytes_per_second)
        for connection in list(self._connections):
            for half in connection.halves:
                if half.name in self._rates:
                    half._tokens, half._stamp = 0.0, now

    def unthrottle(self, *, direction: str = BOTH) -> None:
        """Undo :meth:`throttle`: forward what was held at full speed."""
        _check_direction(direction)
        for name in (UPSTREAM, DOWNSTREAM):
            if _covers(direction, name):
                self._rates.pop(name, None)
        for connection in list(self._connections):
            for half in connection.halves:
                half.pump()

    def clear(self) -> None:
        """Disarm every fault: triggers, byte budgets, refusals, stalls and throttles."""
        self._triggers.clear()
        self._refuse = 0
        for connection in list(self._connections):
            for half in connection.halves:
                half.budget = None
        self.resume()
        self.unthrottle()

    @property
    def armed(self) -> int:
        """Frame triggers still armed."""
        return sum(1 for t in self._triggers if not t.exhausted)

    def pending(self, action: str, *, direction: str = BOTH,
                commands: Optional[Iterable[str]] = None) -> int:
        """Armed triggers of ``action`` (``"reset_before_frame"``, ``"reset_in_frame"`` or
        ``"drop"``) for exactly ``direction`` and ``commands`` (None: any frame) that have not
        fired yet: what a caller checks before arming the same fault again, since armed
        triggers queue up while no matching frame passes."""
        if action not in ("reset_before_frame", "reset_in_frame", "drop"):
            raise ValueError(f"unknown frame fault {action!r}")
        _check_direction(direction)
        if isinstance(commands, str):
            commands = (commands,)
        names = None if commands is None else frozenset(commands)
        return sum(1 for t in self._triggers
                   if not t.exhausted and t.action == action and t.direction == direction
                   and t.commands == names)

    # ---- internals ----------------------------------------------------------------------------

    def _arm(self, action: str, direction: str, commands: Optional[Iterable[str]],
             times: Optional[int], probability: float,
             connection: Optional[ProxiedConnection]) -> None:
        _check_direction(direction)
        if times is not None and (type(times) is not int or times < 1):
            raise ValueError(f"times must be an int >= 1 or None, not {times!r}")
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], not {probability!r}")
        if isinstance(commands, str):
            commands = (commands,)
        names = None if commands is None else frozenset(commands)
        if names is not None:
            unknown = names - set(_NAMES.values())
            if unknown:
                raise ValueError(f"unknown command names: {sorted(unknown)}")
        self._triggers.append(_Trigger(action, direction, names, times, probability, connection))

    def _watching(self, half: _Half) -> bool:
        """Whether an armed frame trigger may hit the next frame of ``half``."""
        for trigger in self._triggers:
            if (not trigger.exhausted and _covers(trigger.direction, half.name)
                    and (trigger.connection is None or trigger.connection is half.connection)):
                return True
        return False

    def _fire(self, half: _Half, name: str) -> Optional[str]:
        """The action armed for this frame, if any (the trigger counts it)."""
        triggers = self._triggers
        if not triggers:
            return None
        chosen = None
        for trigger in triggers:
            if trigger.exhausted or not _covers(trigger.direction, half.name):
                continue
            if trigger.commands is not None and name not in trigger.commands:
                continue
            if trigger.connection is not None and trigger.connection is not half.connection:
                continue
            if trigger.probability < 1 and self._rng.random() >= trigger.probability:
                continue
            trigger.fired += 1
            chosen = trigger.action
            break
        if any(t.exhausted for t in triggers):
            self._triggers = [t for t in triggers if not t.exhausted]
        return chosen

    def _accept(self) -> asyncio.Protocol:
        connection = ProxiedConnection(self)
        self._connections.add(connection)
        self.stats["connections"] += 1
        task = self._loop.create_task(self._connect(connection))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return connection.client

    async def _connect(self, connection: ProxiedConnection) -> None:
        await asyncio.sleep(0)  # connection_made has run: the client transport exists
        client = connection.client.transport
        if client is None or connection.closed:
            return
        if self._refuse is None or self._refuse > 0:
            if self._refuse is not None:
                self._refuse -= 1
            connection._fault_reset("refused")
            return
        host, port = self.target
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: connection.server, host, port),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            _LOG.info("fault proxy: cannot reach %s:%d: %r", host, port, exc)
            connection.reset()
            return
        except asyncio.CancelledError:
            connection.reset()
            raise
        if connection.closed:
            _hard_close(connection.server.transport)
            return
        connection._wire()

    def _forget(self, connection: ProxiedConnection) -> None:
        self._connections.discard(connection)

    def __repr__(self) -> str:
        host, port = self.endpoint
        return (f"<FaultProxy {host}:{port} -> {self.target[0]}:{self.target[1]} "
                f"connections={len(self._connections)}>")

"""One TCP (or TLS) connection to a segment store, shared by many flows (PDP-36).

This is the thin asyncio shell around the sans-I/O pieces: the codec's :class:`FrameDecoder`
reads replies, the append path's :class:`~pravega_wire.appends.CommandEncoder` writes every
command (so that, for example, a ReadSegment closes an open append block first). It does what
Java's ``FlowHandler`` and ``TcpClientConnection`` do together (docs/protocol.md §1, §6, §7):

* ``Hello(17, 5)`` is the first frame; :func:`open_connection` returns once the server's Hello
  has arrived and is compatible (otherwise :class:`~pravega_wire.errors.IncompatibleVersionError`
  and the socket is closed). The server's Hello goes to every flow, also to flows opened later.
* Replies are dispatched by ``request_id >> 32`` to the flow with that id. KeepAlive goes to no
  flow; a reply for an unknown flow is counted (:attr:`Connection.replies_dropped`), logged and
  dropped. A connection opened with ``flows_enabled=False`` carries a single flow (id 0, Java's
  ``FLOW_DISABLED``) that receives every reply, whatever its request id.
* Every DataAppended is fed to the encoder's batch-size tracker (``record_ack``) before it is
  dispatched, as Java does.
* A KeepAlive is sent only when no data arrived during a whole keep-alive interval (first check
  after two intervals: Java's 20 s then every 10 s). A read timeout (Java's 180 s) closes a
  connection whose server went silent (a half-open connection).
* Commands are encoded at once (a bad command raises before any byte is queued) and all the
  bytes queued during one event-loop iteration go out in one transport write, at the end of the
  iteration; except that what the flows queue while a batch of replies is dispatched to them
  leaves right after that batch (as Netty flushes when a read completes), so that the server
  works on it while the client reads its other connections. The 20 ms batch timer drives
  ``CommandEncoder.batch_timeout`` while an append block is open.
* Flow control: when the transport's buffer passes its high-water mark, ``await
  FlowConnection.drain()`` waits until it has drained below the low-water mark, so a slow server
  bounds memory. Writes blocked for longer than the read timeout fail the connection.
* Any failure (EOF, reset, read timeout, malformed bytes, a frame that is not a reply, an
  incompatible Hello) closes the connection: every flow's listener hears
  ``connection_lost(exc)`` exactly once, with a :class:`~pravega_wire.errors.ConnectionFailedError`
  (``__cause__`` says why, e.g. the :class:`~pravega_wire.errors.InvalidMessageError`), and
  receives nothing after. Replies decoded before a malformed frame are delivered first. A
  listener that raises fails only its own flow.

The connection is not thread-safe: use it from the event loop that opened it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Tuple

from . import codec as _default_codec
from . import commands as C
from .appends import CommandEncoder
from .errors import (ConnectionClosedError, ConnectionFailedError, IncompatibleVersionError,
                     InvalidMessageError)
from ._mode import pure_requested
from .flow import FLOW_DISABLED, MAX_FLOW_ID

# The per-message part (a flow's send/append, the dispatch of replies) is compiled like the
# codec and the append path, and picked the same way.
if pure_requested():
    from . import _flowcore_py as _core
else:
    try:
        from . import _flowcore as _core  # type: ignore[no-redef]
    except ImportError:  # no compiler at install time: the pure twin stands in
        from . import _flowcore_py as _core  # type: ignore[no-redef]

#: Every command a segment store may send that is routed to a flow: the replies of docs/protocol.md §3
#: (Hello and KeepAlive are handled by the connection itself).
REPLY_TYPES = _core.REPLY_TYPES
#: Which twin of the per-message part loaded: ``"compiled"`` or ``"pure"``.
IMPLEMENTATION: str = _core.IMPLEMENTATION

__all__ = ["ConnectionConfig", "Connection", "FlowConnection", "FlowListener", "open_connection",
           "Endpoint", "BATCH_INTERVAL", "REPLY_TYPES", "IMPLEMENTATION"]

log = logging.getLogger(__name__)

#: ``(host, port)``. The host string is used literally: ``localhost`` and ``127.0.0.1`` are two
#: endpoints, as in Java's pool.
Endpoint = Tuple[str, int]

#: Period of the append batch timer (Java's ``MAX_BATCH_TIME_MILLIS`` = 20 ms).
BATCH_INTERVAL = 0.020

_HELLO = C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION)
_KEEPALIVE = C.KeepAlive()

# Connection states.
_CONNECTING, _OPEN, _CLOSED = _core.CONNECTING, _core.OPEN, _core.CLOSED
_dispatch = _core.dispatch


def check_endpoint(endpoint) -> Endpoint:
    """``endpoint`` as a ``(host, port)`` tuple, or ``TypeError`` / ``ValueError``."""
    try:
        host, port = endpoint
    except (TypeError, ValueError):
        raise TypeError(f"an endpoint is a (host, port) pair, not {endpoint!r}") from None
    if not isinstance(host, str) or not host:
        raise TypeError(f"the endpoint's host must be a non-empty str, not {host!r}")
    if type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"the endpoint's port must be an int in 1..65535, not {port!r}")
    return (host, port)


def _check_number(name, value, *, allow_none=False, allow_zero=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number{' or None' if allow_none else ''}, "
                        f"not {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, not {value!r}")


@dataclass(frozen=True)
class ConnectionConfig:
    """How connections to segment stores are made. Times are in seconds.

    * ``connect_timeout`` bounds the TCP connect, the TLS handshake and the Hello exchange
      (Java: 5 s).
    * ``read_timeout``: a connection on which nothing arrived for this long is closed with
      :class:`~pravega_wire.errors.ConnectionFailedError` (Java's socket read timeout, 180 s);
      it also bounds how long writes may stay blocked by a server that does not read. ``None``
      disables both checks. It must exceed two keep-alive intervals, so that a healthy idle
      connection (which exchanges KeepAlives) never times out.
    * ``keepalive_interval``: a KeepAlive is sent when nothing arrived during a whole interval;
      the first check runs after two intervals (Java: 20 s, then every 10 s).
    * TLS: ``tls=True`` verifies the server against the PEM CA file (or OpenSSL CA directory)
      ``trust_store``, or the system's default trust store when it is ``None``, and checks that
      the certificate matches the endpoint's host name or IP address. ``validate_hostname=False``
      turns the name check off (the chain is still verified), like Java's
      ``validateHostName=false``. ``ssl_context`` supplies a ready context instead (it implies
      TLS and overrides ``trust_store`` and ``validate_hostname``). A trust store that cannot be
      loaded fails the connect with ``ConnectionFailedError``.
    * ``append_block_size``: ``None`` for Java's adaptive per-flow append batching, or a callable
      ``flow_id -> bytes`` giving a fixed block size (0 = no batching); passed to the encoder.
    """

    connect_timeout: float = 5.0
    read_timeout: Optional[float] = 180.0
    keepalive_interval: float = 10.0
    tls: bool = False
    trust_store: Optional[str] = None
    validate_hostname: bool = True
    ssl_context: Optional[ssl.SSLContext] = None
    append_block_size: Optional[Callable[[int], int]] = None
    _ssl_cache: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_number("connect_timeout", self.connect_timeout)
        _check_number("read_timeout", self.read_timeout, allow_none=True)
        _check_number("keepalive_interval", self.keepalive_interval)
        if self.read_timeout is not None and self.read_timeout <= 2 * self.keepalive_interval:
            raise ValueError(f"read_timeout ({self.read_timeout}) must exceed two keep-alive "
                             f"intervals ({2 * self.keepalive_interval}): an idle healthy "
                             "connection would time out")
        for name in ("tls", "validate_hostname"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, not {getattr(self, name)!r}")
        if self.trust_store is not None and not isinstance(self.trust_store, (str, os.PathLike)):
            raise TypeError(f"trust_store must be a path or None, not {self.trust_store!r}")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, not {self.ssl_context!r}")
        if self.append_block_size is not None and not callable(self.append_block_size):
            raise TypeError("append_block_size must be None or a callable flow_id -> int")

    @property
    def tls_enabled(self) -> bool:
        return self.tls or self.ssl_context is not None

    def create_ssl_context(self) -> Optional[ssl.SSLContext]:
        """The TLS context connections use (built once, then reused), or ``None`` without TLS.
        Raises :class:`~pravega_wire.errors.ConnectionFailedError` if the trust store cannot be
        loaded."""
        if self.ssl_context is not None:
            return self.ssl_context
        if not self.tls:
            return None
        context = self._ssl_cache
        if context is None:
            store = None if self.trust_store is None else os.fspath(self.trust_store)
            try:
                if store is not None and os.path.isdir(store):
                    context = ssl.create_default_context(capath=store)
                else:
                    context = ssl.create_default_context(cafile=store)
            except (OSError, ssl.SSLError) as e:
                raise ConnectionFailedError(
                    f"cannot load the TLS trust store {store!r}: {e}") from e
            context.check_hostname = self.validate_hostname
            object.__setattr__(self, "_ssl_cache", context)
        return context


class FlowListener(Protocol):
    """What a flow's owner implements (structurally: any object with these two methods).

    Both are called on the event loop, from the connection's reader; they must not block.
    """

    def reply_received(self, reply: C.Command) -> None:
        """A reply for this flow, or the server's Hello (also replayed when the flow opens on a
        connection that already has it)."""

    def connection_lost(self, exc: BaseException) -> None:
        """The flow is dead: its connection failed or was closed (``exc`` is a
        :class:`~pravega_wire.errors.ConnectionFailedError`; a
        :class:`~pravega_wire.errors.ConnectionClosedError` for a deliberate close), or its own
        listener raised. Called at most once, and no reply follows it. Not called when the flow
        is closed with :meth:`FlowConnection.close`."""


def _check_listener(listener) -> None:
    for name in ("reply_received", "connection_lost"):
        if not callable(getattr(listener, name, None)):
            raise TypeError(f"a flow listener needs a callable {name}(); {listener!r} has none")


class FlowConnection(_core.FlowCore):
    """One flow on a shared connection: what a segment writer, reader or raw client holds.

    ``send`` and ``append`` queue at once (bytes leave at the end of the event-loop iteration,
    or right after the batch of replies being dispatched when called from a listener) and
    raise :class:`~pravega_wire.errors.ConnectionFailedError` on a closed flow or connection
    (:class:`~pravega_wire.errors.ConnectionClosedError` after :meth:`close`), or the encoder's
    error (:class:`~pravega_wire.errors.InvalidMessageError`, ``TypeError``) for a command that
    cannot be sent, before anything is queued. ``await drain()`` waits while the server is not
    keeping up.

    ``flow_id``, ``send(cmd)``, ``append(append)`` and ``append_event(...)`` come from the
    per-message core (``pravega_wire._flowcore``, compiled, or its pure twin).
    """

    __slots__ = ()

    async def drain(self) -> None:
        """Wait while the connection's transport buffer is over its high-water mark (bytes
        queued by ``send`` count too: past the mark they are written at once). Returns at once
        when there is room; raises ``ConnectionFailedError`` if the flow or connection dies
        first. Bounded: writes blocked longer than the read timeout fail the connection."""
        conn = self._conn
        if conn is None:
            raise self._dead()
        if conn._encoder.pending >= conn._high_water:
            conn._flush()  # do not wait for the next iteration to find out the server is slow
        if conn._paused:
            await conn._wait_writable()
            if self._conn is None:
                raise self._dead()

    # -- state -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the flow: nothing is sent, its listener hears nothing more, and the shared
        connection stays open (a connection with flows disabled closes with its flow).
        Idempotent."""
        conn = self._conn
        if conn is not None:
            conn._remove_flow(self)

    @property
    def is_closed(self) -> bool:
        return self._conn is None

    @property
    def connection(self) -> Optional["Connection"]:
        """The connection carrying this flow, ``None`` once the flow is closed or failed."""
        return self._conn

    @property
    def listener(self) -> FlowListener:
        return self._listener

    @property
    def error(self) -> Optional[BaseException]:
        """Why the flow died (what its listener was told), ``None`` if open or closed by us."""
        return self._error

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"on {self._conn!r}"
        return f"<FlowConnection flow_id={self.flow_id} {state}>"


class Connection(_core.ConnectionCore, asyncio.Protocol):
    """One connection to a segment store; made by :func:`open_connection`.

    Attributes: ``endpoint``; ``server_hello`` (the server's Hello); ``server_version`` (its
    highest version) and ``negotiated_version`` (``min(17, server_version)``);
    ``replies_dropped`` (replies for no open flow); ``flows_enabled``.
    """

    def __init__(self, endpoint: Endpoint, config: ConnectionConfig, *, flows_enabled: bool = True,
                 codec=None, idle_timeout: Optional[float] = None,
                 on_close: Optional[Callable[["Connection"], None]] = None):
        self.endpoint = endpoint
        self.config = config
        self.flows_enabled = flows_enabled
        self.idle_timeout = idle_timeout
        self.server_hello: Optional[C.Hello] = None
        self.replies_dropped = 0
        self._codec = _default_codec if codec is None else codec
        self._decoder = self._codec.FrameDecoder()
        self._encoder = CommandEncoder(block_size=config.append_block_size)
        self._flows: dict = {}
        self._single: Optional[FlowConnection] = None
        self._state = _CONNECTING
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._transport: Optional[asyncio.Transport] = None
        self._on_close = on_close
        self._close_exc: Optional[BaseException] = None
        self._hello_waiter: Optional[asyncio.Future] = None
        self._closed_waiter: Optional[asyncio.Future] = None
        self._flush_scheduled = False
        self._flush_handle: Optional[asyncio.Handle] = None
        self._paused = False
        self._high_water = 64 * 1024  # the transport's, once connected
        self._drain_waiters: list = []
        self._last_read = 0.0
        # When the frame the decoder holds a part of started arriving (None: no partial frame,
        # or a frame completed since): a frame trickled in for ever counts as silence.
        self._frame_since: Optional[float] = None
        self._last_tick = 0.0
        self._batch_token = -1
        self._idle_since = 0.0
        self._keepalive_handle = None
        self._read_handle = None
        self._batch_handle = None
        self._idle_handle = None
        self._blocked_handle = None
        self._abort_handle = None

    # -- public state ----------------------------------------------------------------------

    @property
    def server_version(self) -> Optional[int]:
        return None if self.server_hello is None else self.server_hello.high_version

    @property
    def negotiated_version(self) -> Optional[int]:
        hello = self.server_hello
        return None if hello is None else min(C.WIRE_VERSION, hello.high_version)

    @property
    def flow_count(self) -> int:
        return len(self._flows)

    @property
    def is_open(self) -> bool:
        return self._state is _OPEN

    @property
    def is_closed(self) -> bool:
        return self._state is _CLOSED

    @property
    def close_reason(self) -> Optional[BaseException]:
        """What the flows were told when the connection closed."""
        return self._close_exc

    @property
    def writing_paused(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return self._paused

    def __repr__(self) -> str:
        host, port = self.endpoint
        return f"<Connection {host}:{port} {self._state} flows={len(self._flows)}>"

    # -- flows -----------------------------------------------------------------------------

    def add_flow(self, flow_id: int, listener: FlowListener) -> FlowConnection:
        """Register a flow and return its handle; the server's Hello is replayed to the
        listener before this returns.

        ``flow_id`` must be in 1 … 2**31 − 1 and not already open on this connection
        (``ValueError``); on a connection with flows disabled it is ignored and the single flow
        gets id 0. Raises ``ConnectionFailedError`` if the connection is not open."""
        _check_listener(listener)
        if self._state is not _OPEN:
            raise self._unusable()
        if self.flows_enabled:
            if type(flow_id) is not int or not 1 <= flow_id <= MAX_FLOW_ID:
                raise ValueError(f"a flow id is an int in 1..{MAX_FLOW_ID}, not {flow_id!r}")
            if flow_id in self._flows:
                raise ValueError(f"flow {flow_id} is already open on {self!r}")
        else:
            if self._flows:
                raise ValueError(f"{self!r} has flows disabled and already carries its flow")
            flow_id = FLOW_DISABLED
        flow = FlowConnection(flow_id, self, listener)
        self._flows[flow_id] = flow
        if not self.flows_enabled:
            self._single = flow
        hello = self.server_hello
        if hello is not None:
            try:
                flow._on_reply(hello)
            except Exception as e:
                self._remove_flow(flow)
                raise ConnectionFailedError(
                    f"the listener of flow {flow_id} raised on the server's Hello: {e!r}") from e
        return flow

    def _remove_flow(self, flow: FlowConnection) -> None:
        flow._conn = None
        if self._flows.get(flow.flow_id) is flow:
            del self._flows[flow.flow_id]
        self._release_sessions(flow)
        if self._single is flow:
            self._single = None
            self.close()
        elif not self._flows:
            self._note_idle()

    def _release_sessions(self, flow: FlowConnection) -> None:
        """Forget the append sessions the flow set up; data they already gave still goes out
        (``CommandEncoder.close_session``), so the encoder's sessions stay bounded."""
        sessions, flow._sessions = flow._sessions, None
        if sessions and self._state is not _CLOSED:
            for segment, writer_id in sessions:
                self._encoder.close_session(segment, writer_id)

    def _note_idle(self) -> None:
        """The connection has no flows: close it if it stays so for ``idle_timeout``."""
        if self.idle_timeout is None or self._state is not _OPEN:
            return
        self._idle_since = self._loop.time()
        if self._idle_handle is None:
            self._idle_handle = self._loop.call_at(self._idle_since + self.idle_timeout,
                                                   self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._state is not _OPEN or self._flows:
            return
        deadline = self._idle_since + self.idle_timeout
        if self._loop.time() >= deadline:
            log.debug("%r: closing after %s s without flows", self, self.idle_timeout)
            self.close(ConnectionClosedError(f"{self!r} closed after {self.idle_timeout} s idle"))
        else:
            self._idle_handle = self._loop.call_at(deadline, self._idle_check)

    # -- opening ---------------------------------------------------------------------------

    async def _connect(self, host: str, port: int, ssl_context) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._closed_waiter = loop.create_future()
        await loop.create_connection(lambda: self, host, port, ssl=ssl_context)
        if self._state is _CLOSED:  # failed between connection_made and now
            raise self._close_exc
        # Hello first, before the connection is handed to anyone (docs/protocol.md §1.3).
        self._send(_HELLO)
        self._flush()
        if self.server_hello is None:  # (a server may also have spoken first)
            self._hello_waiter = loop.create_future()
            await self._hello_waiter
        self._state = _OPEN
        now = loop.time()
        self._last_tick = now
        interval = self.config.keepalive_interval
        self._keepalive_handle = loop.call_at(now + 2 * interval, self._keepalive_tick)
        if self.config.read_timeout is not None:
            self._read_handle = loop.call_at(self._last_read + self.config.read_timeout,
                                             self._read_check)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport
        try:
            self._high_water = transport.get_write_buffer_limits()[1]
        except (AttributeError, NotImplementedError):  # older TLS transports: asyncio's default
            pass
        self._last_read = self._loop.time()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data) -> None:
        if self._state is _CLOSED:
            return
        now = self._last_read = self._loop.time()
        try:
            replies = self._decoder.feed(data)
            if not self._decoder.buffered:
                self._frame_since = None
            elif replies or self._frame_since is None:
                self._frame_since = now
        except InvalidMessageError as e:
            _dispatch(self, getattr(e, "decoded", ()))
            if self._state is not _CLOSED:
                err = ConnectionFailedError(f"malformed data from {self._where()}: {e}")
                err.__cause__ = e
                self._fail(err)
            return
        if replies:
            _dispatch(self, replies)
            # What the listeners sent in answer leaves now, not after every other connection
            # ready in this loop iteration has been read: the server works on it meanwhile.
            # (Sends to other connections made here still leave at the end of the iteration.)
            if self._flush_scheduled and self._state is not _CLOSED:
                self._flush_handle.cancel()
                self._flush()

    def eof_received(self):
        self._fail(ConnectionFailedError(f"{self._where()} closed the connection"))
        return False

    def connection_lost(self, exc) -> None:
        if self._state is not _CLOSED:
            err = ConnectionFailedError(
                f"connection to {self._where()} lost" + (f": {exc}" if exc else ""))
            err.__cause__ = exc
            self._fail(err)
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        waiter = self._closed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True
        if self.config.read_timeout is not None and self._blocked_handle is None:
            self._blocked_handle = self._loop.call_later(self.config.read_timeout,
                                                         self._writes_blocked)

    def resume_writing(self) -> None:
        self._paused = False
        if self._blocked_handle is not None:
            self._blocked_handle.cancel()
            self._blocked_handle = None
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- reading ---------------------------------------------------------------------------

    def _control(self, reply) -> bool:
        """Hello, KeepAlive, or a frame that is not a reply; False once the connection closed."""
        kind = type(reply)
        if kind is C.KeepAlive:
            return True
        if kind is C.Hello:
            return self._on_hello(reply)
        cause = InvalidMessageError(f"{kind.__name__} is not a reply")
        err = ConnectionFailedError(f"{self._where()} sent {kind.__name__}, which is not a reply")
        err.__cause__ = cause
        self._fail(err)
        return False

    def _on_hello(self, hello: C.Hello) -> bool:
        mismatch = C.hello_mismatch(hello)
        if mismatch is not None:
            self._fail(IncompatibleVersionError(f"{self._where()} {mismatch}"))
            return False
        self.server_hello = hello
        waiter = self._hello_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(hello)
        for flow in list(self._flows.values()):
            if flow._conn is not self:
                continue
            try:
                flow._on_reply(hello)
            except Exception as e:
                self._listener_failed(flow, e)
            if self._state is _CLOSED:
                return False
        return True

    def _drop(self, reply) -> None:
        # Counted, and logged at INFO: a reply for a flow the client just closed (a reader closed
        # while its long-poll read was outstanding) is routine, not a fault.
        self.replies_dropped += 1
        log.info("%r: dropped %s for flow %d, which is not open on this connection",
                 self, type(reply).__name__, reply.request_id >> 32)

    def _listener_failed(self, flow: FlowConnection, e: Exception) -> None:
        if flow._conn is not self:
            return
        log.warning("%r: the listener of flow %d raised; failing that flow", self, flow.flow_id,
                    exc_info=e)
        err = ConnectionFailedError(f"flow {flow.flow_id} failed: its listener raised {e!r}")
        err.__cause__ = e
        if flow is self._single:  # the flow is the connection
            self._fail(err)
            return
        del self._flows[flow.flow_id]
        flow._conn = None
        flow._error = err
        self._release_sessions(flow)
        try:
            flow._listener.connection_lost(err)
        except Exception:
            log.exception("%r: connection_lost of flow %d raised", self, flow.flow_id)
        if not self._flows:
            self._note_idle()

    def _read_check(self) -> None:
        self._read_handle = None
        if self._state is _CLOSED:
            return
        timeout = self.config.read_timeout
        now = self._loop.time()
        deadline = self._last_read + timeout
        if now >= deadline:
            self._fail(ConnectionFailedError(
                f"nothing received from {self._where()} for {timeout} s (read timeout)"))
            return
        if self._frame_since is not None:
            frame_deadline = self._frame_since + timeout
            if now >= frame_deadline:
                self._fail(ConnectionFailedError(
                    f"a frame from {self._where()} has been arriving for {timeout} s without "
                    f"completing (read timeout)"))
                return
            deadline = min(deadline, frame_deadline)
        self._read_handle = self._loop.call_at(deadline, self._read_check)

    # -- writing ---------------------------------------------------------------------------

    def _send(self, cmd) -> None:
        """Queue a command of the connection's own (Hello, KeepAlive)."""
        try:
            self._encoder.write_command(cmd)
        except ConnectionFailedError as e:
            raise self._encoder_failed(e) from e
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        self._flush_handle = self._loop.call_soon(self._flush)

    def _encoder_failed(self, e: Exception) -> ConnectionFailedError:
        err = ConnectionFailedError(f"{self!r} closed by its encoder: {e}")
        err.__cause__ = e
        self._fail(err)
        return ConnectionFailedError(str(err))

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._flush_handle = None
        if self._state is _CLOSED:
            return
        encoder = self._encoder
        data = encoder.data_to_send()
        if data:
            self._transport.write(data)
        if self._batch_handle is None and encoder.buffered:
            self._batch_handle = self._loop.call_later(BATCH_INTERVAL, self._batch_tick)

    def _batch_tick(self) -> None:
        self._batch_handle = None
        if self._state is _CLOSED:
            return
        encoder = self._encoder
        self._batch_token = encoder.batch_timeout(self._batch_token)
        data = encoder.data_to_send()
        if data:
            self._transport.write(data)
        if encoder.buffered:
            self._batch_handle = self._loop.call_later(BATCH_INTERVAL, self._batch_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_handle = None
        if self._state is _CLOSED:
            return
        now = self._loop.time()
        if self._last_read <= self._last_tick:  # nothing arrived during a whole interval
            try:
                self._send(_KEEPALIVE)
            except ConnectionFailedError:
                return
        self._last_tick = now
        self._keepalive_handle = self._loop.call_at(now + self.config.keepalive_interval,
                                                    self._keepalive_tick)

    async def _wait_writable(self) -> None:
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _writes_blocked(self) -> None:
        self._blocked_handle = None
        if self._paused and self._state is not _CLOSED:
            self._fail(ConnectionFailedError(
                f"writes to {self._where()} blocked for {self.config.read_timeout} s"))

    # -- closing ---------------------------------------------------------------------------

    def close(self, exc: Optional[BaseException] = None) -> None:
        """Close deliberately: the flows' listeners hear ``exc`` (by default a
        :class:`~pravega_wire.errors.ConnectionClosedError`); queued bytes are still written,
        within ``connect_timeout``. Idempotent."""
        if self._state is _CLOSED:
            return
        self._fail(exc if exc is not None else ConnectionClosedError(f"{self!r} was closed"),
                   graceful=True)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (bounded by ``connect_timeout`` after a close)."""
        waiter = self._closed_waiter
        if waiter is not None and self._transport is not None:
            await asyncio.shield(waiter)

    def _fail(self, exc: BaseException, *, graceful: bool = False) -> None:
        if self._state is _CLOSED:
            return
        was_open = self._state is _OPEN
        self._state = _CLOSED
        self._close_exc = exc
        for name in ("_keepalive_handle", "_read_handle", "_batch_handle", "_idle_handle",
                     "_blocked_handle"):
            handle = getattr(self, name)
            if handle is not None:
                handle.cancel()
                setattr(self, name, None)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if graceful:
                data = self._encoder.data_to_send()
                if data:
                    transport.write(data)
                transport.close()
                self._abort_handle = self._loop.call_later(self.config.connect_timeout,
                                                           transport.abort)
            else:
                transport.abort()
        waiter = self._hello_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)  # drain() then sees the dead flow and raises
        flows = list(self._flows.values())
        self._flows = {}
        self._single = None
        for flow in flows:
            flow._conn = None
            flow._error = exc
        for flow in flows:
            try:
                flow._listener.connection_lost(exc)
            except Exception:
                log.exception("%r: connection_lost of flow %d raised", self, flow.flow_id)
        if was_open:
            log.debug("%r closed: %s", self, exc)
            if self._on_close is not None:
                self._on_close(self)

    def _unusable(self) -> ConnectionFailedError:
        if self._state is _CONNECTING:
            return ConnectionFailedError(f"{self!r} is not open yet")
        err = ConnectionFailedError(f"{self!r} is closed")
        err.__cause__ = self._close_exc
        return err

    def _where(self) -> str:
        host, port = self.endpoint
        return f"{host}:{port}"


async def open_connection(endpoint, config: Optional[ConnectionConfig] = None, *,
                          flows_enabled: bool = True, codec=None,
                          idle_timeout: Optional[float] = None,
                          on_close: Optional[Callable[[Connection], None]] = None) -> Connection:
    """Connect to a segment store, exchange Hellos and return the open :class:`Connection`.

    ``flows_enabled=False`` makes a connection for a single flow (id 0) that receives every
    reply. ``codec`` is the codec module to decode with (default :mod:`pravega_wire.codec`, or
    e.g. ``pravega_wire._codec_py``). ``idle_timeout``: close the connection once it has had no
    flow for that long. ``on_close(connection)`` is called once when an open connection closes.

    Raises :class:`~pravega_wire.errors.ConnectionFailedError` (refused, unreachable, TLS
    failure, no Hello within ``connect_timeout``, closed during the handshake) or its subclass
    :class:`~pravega_wire.errors.IncompatibleVersionError`; the socket is closed then.
    """
    host, port = check_endpoint(endpoint)
    config = ConnectionConfig() if config is None else config
    if not isinstance(config, ConnectionConfig):
        raise TypeError(f"config must be a ConnectionConfig, not {config!r}")
    _check_number("idle_timeout", idle_timeout, allow_none=True)
    ssl_context = config.create_ssl_context()
    conn = Connection((host, port), config, flows_enabled=flows_enabled, codec=codec,
                      idle_timeout=idle_timeout)
    try:
        await asyncio.wait_for(conn._connect(host, port, ssl_context), config.connect_timeout)
    except ConnectionFailedError as e:
        conn._fail(e)
        raise
    except asyncio.TimeoutError:
        err = ConnectionFailedError(
            f"no connection to {host}:{port} within {config.connect_timeout} s "
            f"({'no Hello from the server' if conn._transport is not None else 'connect'})")
        conn._fail(err)
        raise err from None
    except OSError as e:  # refused, unreachable, name resolution, TLS verification (SSLError)
        err = ConnectionFailedError(f"cannot connect to {host}:{port}: {e}")
        conn._fail(err)
        raise err from e
    except BaseException:  # cancelled
        conn._fail(ConnectionClosedError(f"connecting to {host}:{port} was cancelled"))
        raise
    if conn._state is not _OPEN:  # failed between the handshake and now
        raise conn._unusable()
    conn._on_close = on_close
    return conn

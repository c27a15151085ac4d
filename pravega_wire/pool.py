"""The PDP-36 connection pool: many flows multiplexed over a few connections per segment store.

Selection follows Java's ``ConnectionPoolImpl`` (docs/protocol.md §7.3). Per endpoint
(the literal ``(host, port)``), the pool keeps a list of connections and, for a new flow:

1. drops the connections that failed or closed;
2. takes the one with the fewest open flows (a connection still being opened sorts last; ties go
   to the oldest);
3. reuses it if the list is full (``max_connections_per_segment_store``) or it carries no flow
   (a connection still being opened counts as carrying none, so a burst of first calls shares
   one connection); otherwise opens another connection.

Connecting and the Hello exchange happen outside any critical section; the flows waiting for a
connection are registered the moment it opens, or all fail with
:class:`~pravega_wire.errors.ConnectionFailedError` if it cannot be opened (it is then pruned).

Beyond Java: a connection without flows for ``idle_timeout`` seconds is closed (Java keeps
them forever; ``idle_timeout=None`` restores that), and :meth:`ConnectionPool.close` also closes
the dedicated connections it opened.

The pool belongs to one event loop and is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .connection import (Connection, ConnectionConfig, Endpoint, FlowConnection, FlowListener,
                         _check_listener, _check_number, check_endpoint, open_connection)
from .errors import ConnectionClosedError, ConnectionFailedError
from .flow import FLOW_DISABLED, MAX_FLOW_ID, next_flow_id

__all__ = ["ClientConfig", "ConnectionPool", "PoolStats", "ConnectionStats", "FlowConnection",
           "FlowListener"]

log = logging.getLogger(__name__)

_INF = float("inf")


@dataclass(frozen=True)
class ClientConfig(ConnectionConfig):
    """Pool settings, plus every :class:`~pravega_wire.connection.ConnectionConfig` setting
    (timeouts, keep-alive, TLS). Pass them by keyword.

    * ``max_connections_per_segment_store`` (Java's default 10; Java's controller uses 1).
    * ``idle_timeout``: seconds after which a pooled connection without flows is closed;
      ``None`` keeps idle connections open forever, as Java does.
    """

    max_connections_per_segment_store: int = 10
    idle_timeout: Optional[float] = 60.0

    def __post_init__(self):
        super().__post_init__()
        n = self.max_connections_per_segment_store
        if type(n) is not int:
            raise TypeError(f"max_connections_per_segment_store must be an int, not {n!r}")
        if n < 1:
            raise ValueError(f"max_connections_per_segment_store must be >= 1, not {n}")
        _check_number("idle_timeout", self.idle_timeout, allow_none=True)


@dataclass(frozen=True)
class ConnectionStats:
    """One pooled connection: ``state`` is ``"connecting"`` or ``"open"``; ``flows`` counts the
    open flows (for a connecting one, the flows waiting for it)."""

    state: str
    flows: int
    server_version: Optional[int]
    replies_dropped: int


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of the pool.

    * ``endpoints``: per endpoint, its pooled connections (oldest first);
    * ``dedicated``: per endpoint, the number of open dedicated (unpooled) connections;
    * ``connections_opened`` / ``connections_closed``: connections (pooled and dedicated) that
      completed the handshake, and those of them closed since, for whatever reason;
    * ``connect_failures``: connection attempts that failed;
    * ``replies_dropped``: replies that arrived for a flow not open on their connection.
    """

    endpoints: Dict[Endpoint, Tuple[ConnectionStats, ...]]
    dedicated: Dict[Endpoint, int]
    connections_opened: int
    connections_closed: int
    connect_failures: int
    replies_dropped: int

    @property
    def open_connections(self) -> int:
        """Open sockets: pooled connections past their handshake, plus dedicated ones."""
        return (sum(1 for conns in self.endpoints.values() for c in conns if c.state == "open")
                + sum(self.dedicated.values()))

    @property
    def open_flows(self) -> int:
        return (sum(c.flows for conns in self.endpoints.values() for c in conns
                    if c.state == "open") + sum(self.dedicated.values()))


class _Entry:
    """A pooled connection, or one being opened (``conn`` is None and ``waiters`` holds
    ``(flow_id, explicit, listener, future)`` for each flow waiting for it)."""

    __slots__ = ("conn", "waiters", "task")

    def __init__(self):
        self.conn: Optional[Connection] = None
        self.waiters: Optional[list] = []
        self.task: Optional[asyncio.Task] = None


class ConnectionPool:
    """Pooled connections to segment stores, shared by flows.

    ``codec`` is the codec module connections decode with (default :mod:`pravega_wire.codec`).
    Use ``async with ConnectionPool(...) as pool:`` or call :meth:`close`.
    """

    def __init__(self, config: Optional[ClientConfig] = None, *, codec=None):
        config = ClientConfig() if config is None else config
        if not isinstance(config, ClientConfig):
            raise TypeError(f"config must be a ClientConfig, not {config!r}")
        self.config = config
        self._codec = codec
        self._max = config.max_connections_per_segment_store
        self._endpoints: Dict[Endpoint, List[_Entry]] = {}
        self._dedicated: set = set()
        self._connecting: set = set()  # tasks opening dedicated connections
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._opened = 0
        self._closed_count = 0
        self._connect_failures = 0
        self._dropped_closed = 0  # replies dropped by connections since closed

    async def __aenter__(self) -> "ConnectionPool":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    @property
    def is_closed(self) -> bool:
        return self._closed

    # -- flows -----------------------------------------------------------------------------

    async def open_flow(self, endpoint: Endpoint, listener: FlowListener, *,
                        flow_id: Optional[int] = None) -> FlowConnection:
        """Open a flow on a pooled connection to ``endpoint`` (``(host, port)``).

        ``listener`` gets ``reply_received(reply)`` for the flow's replies and the server's
        Hello, and ``connection_lost(exc)`` once if the flow dies (see
        :class:`~pravega_wire.connection.FlowListener`). ``flow_id`` reuses a flow id (a
        reconnecting writer or reader keeps its id); by default a new one is allocated, never
        one already open on the chosen connection. A ``flow_id`` already open there is a
        ``ValueError``.

        Raises :class:`~pravega_wire.errors.ConnectionFailedError` if the connection cannot be
        opened, :class:`~pravega_wire.errors.ConnectionClosedError` once the pool is closed.
        """
        self._check_usable()
        endpoint = check_endpoint(endpoint)
        _check_listener(listener)
        explicit = flow_id is not None
        if explicit and (type(flow_id) is not int or not 1 <= flow_id <= MAX_FLOW_ID):
            raise ValueError(f"a flow id is an int in 1..{MAX_FLOW_ID}, not {flow_id!r}")
        entry = self._choose(endpoint)
        conn = entry.conn
        if conn is not None:
            return conn.add_flow(flow_id if explicit else self._new_flow_id(conn), listener)
        future = self._loop.create_future()
        entry.waiters.append((flow_id, explicit, listener, future))
        return await future

    async def open_dedicated_flow(self, endpoint: Endpoint, listener: FlowListener
                                  ) -> FlowConnection:
        """Open a new connection to ``endpoint`` that carries only this flow (Java's
        non-pooled path, flow id 0: every reply on it goes to ``listener``). It does not count
        toward the pool's limit, and closing the flow closes the connection. Used by writers
        with ``enable_connection_pooling=False``."""
        self._check_usable()
        endpoint = check_endpoint(endpoint)
        _check_listener(listener)
        task = self._loop.create_task(self._open(endpoint, flows_enabled=False))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        try:
            conn = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # by close()
                raise ConnectionClosedError("the connection pool is closed") from None
            task.add_done_callback(_close_result)  # our caller was cancelled
            raise
        if self._closed:  # close() ran after the connection opened; it closed it
            raise ConnectionClosedError("the connection pool is closed")
        return conn.add_flow(FLOW_DISABLED, listener)

    def _check_usable(self) -> None:
        if self._closed:
            raise ConnectionClosedError("the connection pool is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("a ConnectionPool is bound to the event loop that first used it")

    @staticmethod
    def _new_flow_id(conn: Connection) -> int:
        # The process-wide allocator wraps after 2**31 - 1 ids: skip any still open here. Its
        # ids are distinct until it wraps, so this draws at most len(flows) + 1 of them.
        flows = conn._flows
        flow_id = next_flow_id()
        while flow_id in flows:
            flow_id = next_flow_id()
        return flow_id

    def _choose(self, endpoint: Endpoint) -> _Entry:
        entries = self._endpoints.get(endpoint)
        if entries is None:
            entries = self._endpoints[endpoint] = []
        # Failed and closed connections were pruned when they failed (_connect and
        # _connection_closed), so every entry here is connecting or open.
        best = None
        best_count = _INF
        for entry in entries:
            conn = entry.conn
            count = _INF if conn is None else len(conn._flows)
            if best is None or count < best_count:
                best, best_count = entry, count
        if best is not None and (len(entries) >= self._max or best.conn is None
                                 or best_count == 0):
            return best
        entry = _Entry()
        entries.append(entry)
        entry.task = self._loop.create_task(self._connect(endpoint, entry))
        return entry

    # -- connecting ------------------------------------------------------------------------

    async def _open(self, endpoint: Endpoint, *, flows_enabled: bool) -> Connection:
        try:
            conn = await open_connection(
                endpoint, self.config, flows_enabled=flows_enabled, codec=self._codec,
                idle_timeout=self.config.idle_timeout if flows_enabled else None,
                on_close=self._connection_closed)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._connect_failures += 1
            log.warning("cannot connect to %s:%d: %s", endpoint[0], endpoint[1], e)
            raise
        self._opened += 1
        log.debug("opened %r", conn)
        if self._closed:  # close() came while the handshake was completing
            conn.close(ConnectionClosedError("the connection pool is closed"))
            await conn.wait_closed()
            raise ConnectionClosedError("the connection pool is closed")
        if not flows_enabled:
            self._dedicated.add(conn)  # from now on close() closes it
        return conn

    async def _connect(self, endpoint: Endpoint, entry: _Entry) -> None:
        try:
            conn = await self._open(endpoint, flows_enabled=True)
        except BaseException as e:
            entries = self._endpoints.get(endpoint)
            if entries is not None and entry in entries:
                entries.remove(entry)
                if not entries:
                    del self._endpoints[endpoint]
            waiters, entry.waiters = entry.waiters, None
            if isinstance(e, asyncio.CancelledError):
                error: ConnectionFailedError = ConnectionClosedError(
                    "the connection pool is closed")
            elif isinstance(e, ConnectionFailedError):
                error = e
            else:
                error = ConnectionFailedError(f"cannot connect to {endpoint}: {e!r}")
                error.__cause__ = e
            for _, _, _, future in waiters:
                if not future.done():
                    future.set_exception(_copy_error(error))
            if not isinstance(e, Exception):
                raise
            return
        waiters, entry.waiters = entry.waiters, None
        entry.conn = conn
        for flow_id, explicit, listener, future in waiters:
            if future.done():  # the caller gave up waiting
                continue
            try:
                flow = conn.add_flow(flow_id if explicit else self._new_flow_id(conn), listener)
            except Exception as e:
                future.set_exception(e)
            else:
                future.set_result(flow)
        if not conn._flows:
            conn._note_idle()

    def _connection_closed(self, conn: Connection) -> None:
        self._closed_count += 1
        self._dropped_closed += conn.replies_dropped
        if not conn.flows_enabled:
            self._dedicated.discard(conn)
            return
        entries = self._endpoints.get(conn.endpoint)
        if entries is None:
            return
        for i, entry in enumerate(entries):
            if entry.conn is conn:
                del entries[i]
                break
        if not entries:
            del self._endpoints[conn.endpoint]

    # -- observing and closing -------------------------------------------------------------

    def stats(self) -> PoolStats:
        """A snapshot: connections and flows per endpoint, and the pool's counters."""
        endpoints = {}
        dropped = self._dropped_closed
        for endpoint, entries in self._endpoints.items():
            conns = []
            for entry in entries:
                conn = entry.conn
                if conn is None:
                    conns.append(ConnectionStats("connecting", len(entry.waiters or ()), None, 0))
                elif conn.is_open:
                    dropped += conn.replies_dropped
                    conns.append(ConnectionStats("open", len(conn._flows), conn.server_version,
                                                 conn.replies_dropped))
            if conns:
                endpoints[endpoint] = tuple(conns)
        dedicated: Dict[Endpoint, int] = {}
        for conn in self._dedicated:
            dropped += conn.replies_dropped
            dedicated[conn.endpoint] = dedicated.get(conn.endpoint, 0) + 1
        return PoolStats(endpoints, dedicated, self._opened, self._closed_count,
                         self._connect_failures, dropped)

    async def close(self) -> None:
        """Close the pool: flows waiting for a connection fail with
        :class:`~pravega_wire.errors.ConnectionClosedError`, every open flow's listener hears
        ``connection_lost(ConnectionClosedError)``, every socket (pooled and dedicated) is
        closed, and later calls raise ``ConnectionClosedError``. Returns once the sockets are
        closed (each within ``connect_timeout``). Idempotent."""
        self._closed = True
        error = ConnectionClosedError("the connection pool is closed")
        conns, tasks = [], []
        for entries in list(self._endpoints.values()):
            for entry in list(entries):
                if entry.conn is not None:
                    conns.append(entry.conn)
                elif entry.task is not None:
                    tasks.append(entry.task)
        conns.extend(self._dedicated)
        tasks.extend(self._connecting)
        for task in tasks:
            task.cancel()
        for conn in conns:
            conn.close(_copy_error(error))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            await conn.wait_closed()
        self._endpoints.clear()
        self._dedicated.clear()
        self._connecting.clear()


def _copy_error(error: ConnectionFailedError) -> ConnectionFailedError:
    """A fresh instance of ``error`` (same type, message and cause) to raise in one task."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy


def _close_result(task: asyncio.Task) -> None:
    """Close the connection a dedicated-connection task produced after its caller left."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()

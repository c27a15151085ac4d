"""Byte streams: a one-segment stream used as a file (Java's ``ByteStreamWriter`` /
``ByteStreamReader``).

The writer appends raw bytes (no Event headers: appends whose data is sent as is, each counted
as one event of the writer's session, as Java's ``ByteStreamWriterImpl`` sends them), so the
reader sees exactly the bytes written, and offsets are byte positions.

::

    async with ByteStreamWriter(pool, controller, "sc", "file") as out:
        await out.write(b"hello ")
        await out.write(b"world")
        await out.flush()
    async with ByteStreamReader(pool, controller, "sc", "file") as src:
        await src.read(5)          # b"hello"
        src.seek(6)
        await src.read(5)          # b"world"

The writer keeps its appends on one pooled flow and, when that flow is lost, reconnects and
sends again what the store did not keep (deduplicated by writer id and event number, as
:class:`~pravega_wire.client.writer.SegmentWriter` does); :attr:`ByteStreamWriter.acked_offset`
says what is stored.

With auth on, every request (appends, reads, info, truncate) carries the stream's delegation
token from the controller (one cached per stream).
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from typing import Any

from .. import commands as C
from ..appends import Append
from ..errors import (
    ConnectionClosedError, ConnectionFailedError, TokenExpiredError, WrongHostError,
)
from ._common import Failures, FlowListener, RetryPolicy, event_bytes, open_flow
from .controller import segment_name
from .raw import MetadataClient, _reply_error
from .reader import EndOfSegment, SegmentReader
from .stream import segment_token_provider

__all__ = ["ByteStreamWriter", "ByteStreamReader"]


async def _only_segment(controller: Any, scope: str, stream: str) -> str:
    segments = await controller.get_segments_at_head(scope, stream)  # sealed streams too
    if len(segments) != 1:
        raise ValueError(f"a byte stream has exactly one segment; {scope}/{stream} has "
                         f"{len(segments)}")
    return segment_name(scope, stream, segments[0].segment_id)


class ByteStreamWriter:
    """Appends bytes to the one segment of ``scope/stream``. :meth:`write` queues (and waits
    only while ``max_outstanding`` bytes are unacknowledged); :meth:`flush` waits for every
    acknowledgement. Use ``async with`` or :meth:`close`.

    When its connection is lost the writer reconnects as :class:`SegmentWriter` does (with
    ``retry``, :meth:`RetryPolicy.run`): a new SetupAppend with the same writer id, whose
    AppendSetup names the last append the store kept; the appends after it are sent again
    under their old event numbers, so nothing is lost and nothing is stored twice. Writes made
    while it reconnects wait in order. It fails (every unacknowledged write with the error)
    only when the retries run out or the store refuses the segment."""

    def __init__(self, pool: Any, controller: Any, scope: str, stream: str, *,
                 max_outstanding: int = 4 * 1024 * 1024, retry: RetryPolicy = RetryPolicy()):
        self._pool = pool
        self._controller = controller
        self.scope, self.stream = scope, stream
        self.segment = ""
        self.writer_id = uuid.uuid4()
        self._max_outstanding = max_outstanding
        self._retry = retry
        # Consecutive failures: failed attempts and flows lost; an acknowledgement resets them.
        self._failures = Failures()
        self._token_expired = False  # the store refused the token as expired: fetch anew
        self._flow: Any = None
        self._listener: FlowListener | None = None
        self._request_id = -1
        self._setup: asyncio.Future | None = None
        self._connector: asyncio.Task | None = None
        self._event_number = 0
        self._pending: collections.deque = collections.deque()  # (number, payload, future)
        self._unacked = 0
        self._room = asyncio.Event()
        self._room.set()
        self._error: BaseException | None = None
        self._metadata: MetadataClient | None = None
        self._tokens = segment_token_provider(controller)
        #: Bytes of the segment acknowledged (stored) so far (its length after the last ack).
        self.acked_offset = 0
        #: Number of connections made (SetupAppend acknowledged).
        self.connections = 0

    async def __aenter__(self) -> ByteStreamWriter:
        await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connect(self) -> None:
        """Wait until the writer has a set-up flow (connecting if it has none)."""
        if self._error is not None:
            raise self._error
        if self._flow is not None and self._connector is None:
            return
        if self._connector is None:
            self._connector = asyncio.ensure_future(self._reconnect())
        await asyncio.shield(self._connector)
        if self._error is not None:
            raise self._error

    async def _reconnect(self) -> None:
        try:
            if not self.segment:
                self.segment = await _only_segment(self._controller, self.scope, self.stream)
            # A flow lost again while the old appends were re-sent needs another round.
            while self._flow is None and self._error is None:
                await self._retry.run(self._attempt, what=f"connecting to {self.segment}",
                                      retry_on=lambda e: isinstance(
                                          e, (ConnectionFailedError, WrongHostError,
                                              TokenExpiredError)),
                                      failures=self._failures)
        except Exception as e:  # noqa: BLE001 - the writer's error, told to every write
            self._fail(e)
        finally:
            self._connector = None

    async def _attempt(self) -> None:
        """One connection: SetupAppend, then what the store did not keep is sent again."""
        endpoint = await self._controller.get_endpoint(self.segment)
        listener = FlowListener(self._on_reply, self._on_lost)
        flow = await open_flow(self._pool.open_flow(endpoint, listener))
        if self._error is not None:  # closed meanwhile
            listener.active = False
            flow.close()
            return
        self._drop_flow()
        self._flow, self._listener = flow, listener
        self._request_id = flow.flow_id << 32
        self._setup = asyncio.get_running_loop().create_future()
        token = await self._tokens(self.segment, self._token_expired)
        self._token_expired = False
        flow.send(C.SetupAppend(self._request_id, self.writer_id, self.segment, token))
        setup = await self._setup
        self.connections += 1
        self._acknowledge(setup.last_event_number)
        for number, payload, _ in self._pending:
            self._send(number, payload)

    def _send(self, number: int, payload: bytes) -> None:
        try:
            self._flow.append(Append(self.segment, self.writer_id, number, 1, payload, None,
                                     self._request_id))
        except ConnectionFailedError as e:  # the loss is also reported to the listener
            self._on_lost(self._listener, e)

    def _drop_flow(self) -> None:
        flow, self._flow = self._flow, None
        if self._listener is not None:
            self._listener.active = False
        if flow is not None:
            flow.close()

    def _acknowledge(self, event_number: int) -> None:
        while self._pending and self._pending[0][0] <= event_number:
            _, payload, future = self._pending.popleft()
            self._unacked -= len(payload)
            if not future.done():
                future.set_result(None)
        if self._unacked < self._max_outstanding:
            self._room.set()

    def _on_reply(self, reply: Any) -> None:
        kind = type(reply)
        if kind is C.AppendSetup:
            if self._setup is not None and not self._setup.done():
                self._setup.set_result(reply)
            return
        if kind is C.DataAppended:
            self.acked_offset = max(self.acked_offset, reply.current_segment_write_offset)
            self._failures.reset()
            self._acknowledge(reply.event_number)
            return
        if kind in (C.Hello, C.KeepAlive):
            return
        if kind is C.WrongHost:  # the segment moved: locate it afresh and reconnect
            invalidate = getattr(self._controller, "invalidate", None)
            if invalidate is not None:
                invalidate(self.segment)
            self._on_lost(self._listener, WrongHostError(f"{self.segment} is not on this store"))
            return
        error = _reply_error(self.segment, reply)
        if isinstance(error, TokenExpiredError):  # reconnect with a fresh token
            self._token_expired = True
            self._on_lost(self._listener, error)
        else:
            self._fail(error)

    def _on_lost(self, listener: Any, exc: BaseException | None) -> None:
        if listener is not self._listener or self._error is not None:
            return
        error = exc or ConnectionFailedError(f"the connection for {self.segment} was lost")
        self._drop_flow()
        if self._setup is not None and not self._setup.done():
            self._setup.set_exception(error)  # the connector's attempt fails and is retried
            return
        self._failures.failed(error)  # a flow lost without progress counts as a failed try
        if self._connector is None:
            self._connector = asyncio.ensure_future(self._reconnect())

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._setup is not None and not self._setup.done():
            self._setup.set_exception(error)
        while self._pending:
            future = self._pending.popleft()[2]
            if not future.done():
                future.set_exception(error)
        self._room.set()
        self._drop_flow()

    async def write(self, data: Any) -> None:
        """Append ``data`` (bytes-like, at most 8 MiB) after everything written before."""
        payload = event_bytes(data)
        await self._connect()
        while self._unacked >= self._max_outstanding and self._error is None:
            self._room.clear()
            await self._room.wait()
        if self._error is not None:
            raise self._error
        self._event_number += 1
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((self._event_number, payload, future))
        self._unacked += len(payload)
        if self._flow is not None and self._connector is None:
            self._send(self._event_number, payload)
        # else: the connector sends it once the new flow is set up

    async def flush(self) -> None:
        """Wait until everything written is stored (raises the writer's error otherwise)."""
        if self._pending:
            await asyncio.gather(*(future for _, _, future in list(self._pending)))
        if self._error is not None:
            raise self._error

    async def fetch_tail_offset(self) -> int:
        """The segment's length now (all writers' bytes)."""
        return (await self._meta().get_info(self.segment or await _only_segment(
            self._controller, self.scope, self.stream))).length

    async def truncate_data_before(self, offset: int) -> None:
        """Delete the bytes before ``offset``; readers start there at the earliest."""
        segment = self.segment or await _only_segment(self._controller, self.scope, self.stream)
        await self._meta().truncate(segment, offset)

    def _meta(self) -> MetadataClient:
        if self._metadata is None:
            self._metadata = MetadataClient(self._pool, self._controller,
                                            token_provider=self._tokens)
        return self._metadata

    async def close(self) -> None:
        """Flush, then release the flow."""
        try:
            if self._pending and self._error is None:
                await self.flush()
        finally:
            if self._error is None:
                self._fail(ConnectionClosedError(f"the writer of {self.segment} was closed"))
            connector, self._connector = self._connector, None
            if connector is not None:
                connector.cancel()
            if self._metadata is not None:
                await self._metadata.close()


class ByteStreamReader:
    """Reads the bytes of the one segment of ``scope/stream`` from ``offset``: :meth:`read`,
    :meth:`seek`, :meth:`tell`, :meth:`available` (bytes buffered: readable without waiting).
    ``read`` returns ``b""`` at the end of a sealed stream."""

    def __init__(self, pool: Any, controller: Any, scope: str, stream: str, *, offset: int = 0):
        self._pool = pool
        self._controller = controller
        self.scope, self.stream = scope, stream
        self._offset = offset
        self._reader: SegmentReader | None = None
        self._closing: set[asyncio.Future] = set()  # readers dropped by seek, closing
        self._tokens = segment_token_provider(controller)
        self.segment = ""

    async def __aenter__(self) -> ByteStreamReader:
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open(self) -> SegmentReader:
        if self._reader is None:
            if not self.segment:
                self.segment = await _only_segment(self._controller, self.scope, self.stream)
            self._reader = SegmentReader(self._pool, self._controller, self.segment,
                                         offset=self._offset, token_provider=self._tokens)
        return self._reader

    def tell(self) -> int:
        return self._reader.offset if self._reader is not None else self._offset

    def seek(self, offset: int) -> None:
        """Read from ``offset`` next (the buffered bytes are dropped)."""
        if type(offset) is not int or offset < 0:
            raise ValueError(f"offset must be an int >= 0, not {offset!r}")
        reader, self._reader = self._reader, None
        self._offset = offset
        if reader is not None:
            closing = asyncio.ensure_future(reader.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def available(self) -> int:
        return self._reader.buffered if self._reader is not None else 0

    async def read(self, max_bytes: int = 1024 * 1024, *, timeout: float | None = None) -> bytes:
        """At least one and up to ``max_bytes`` bytes, waiting (up to ``timeout``) for data at
        the tail; ``b""`` at the end of a sealed stream."""
        reader = await self._open()
        try:
            return bytes(await reader.read(max_bytes, timeout=timeout))
        except EndOfSegment:
            return b""

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        await asyncio.gather(*self._closing)

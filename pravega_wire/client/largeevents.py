"""Large events: events over 8 MiB (up to :data:`MAX_LARGE_EVENT_SIZE`), written as Java's
``LargeEventWriter`` writes them (docs/protocol.md §9.3).

One attempt, on one flow (a :class:`~pravega_wire.client.raw.RawClient`):

1. ``CreateTransientSegment`` under the target segment: the store answers ``SegmentCreated``
   with a fresh name, ``<target>#transient.<writer id>.<random>``;
2. ``SetupAppend`` for the transient segment (a fresh one: its last event number must be
   ``NULL_ATTRIBUTE_VALUE``);
3. the Event record (8-byte header + payload) in ``ConditionalBlockEnd`` chunks of at most
   8 MiB, numbered 0, 1, … with their expected offsets in the transient segment, pipelined:
   at most ``window`` chunks unacknowledged at a time (the chunks are views of the event, so
   memory beyond the event itself is bounded by what the connection buffers for them);
4. ``MergeSegments`` of the transient segment into the target: the event appears in the target
   whole, at once, or not at all.

Connection failures (a store that crashes between chunks), WrongHost, expired tokens and
replies that mean the transient segment is not as this attempt left it restart the whole sequence on a new transient
segment, with the retry policy's backoff; the store deletes an abandoned transient segment
with its connection, and one whose merge was refused is deleted (DeleteSegment) at once. A sealed or missing target, a rejected token, or a store without
large-event support end the write with a typed error.

As in Java, a merge whose reply is lost (the connection drops after the store merged) is
written again by the retry: that event is then stored twice.

:class:`LargeEventGate` keeps a :class:`~pravega_wire.client.writer.SegmentWriter`'s order
around large events, as Java's ``EventStreamWriterImpl`` does: the events written before a large
event are flushed first, and the events written after it are held until its merge is
acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import uuid
from typing import Any, Deque, List, Optional, Tuple

from .. import commands as C
from ..errors import ConnectionFailedError, InvalidMessageError, TimeoutError, TokenExpiredError
from ._common import (MAX_EVENT_SIZE, RetryPolicy, SegmentLocator, TokenProvider, _endpoint,
                      as_locator)
from .raw import DEFAULT_REQUEST_TIMEOUT, RawClient, _reply_error, _retryable

__all__ = ["MAX_LARGE_EVENT_SIZE", "CHUNK_SIZE", "CHUNKS_IN_FLIGHT", "write_large_event",
           "is_large", "large_event_bytes", "LargeEventGate"]

log = logging.getLogger("pravega_wire.client.largeevents")

#: Largest event the large-event path writes: 1 GiB.
MAX_LARGE_EVENT_SIZE = 1024 * 1024 * 1024
#: Bytes of the Event record per ConditionalBlockEnd (Java's ``WRITE_SIZE``: 8 MiB).
CHUNK_SIZE = MAX_EVENT_SIZE
#: ConditionalBlockEnds unacknowledged at a time, by default.
CHUNKS_IN_FLIGHT = 4

_EVENT_HEADER = struct.Struct(">ii")
#: Replies about the transient segment that mean "start again" (Java: "a bug, retried").
_RESTART_REPLIES = (C.ConditionalCheckFailed, C.InvalidEventNumber, C.SegmentIsTruncated,
                    C.SegmentAlreadyExists)


def is_large(event: Any) -> bool:
    """Whether ``event`` is bytes-like and over 8 MiB (a large event)."""
    if isinstance(event, (bytes, bytearray)):
        return len(event) > MAX_EVENT_SIZE
    return isinstance(event, memoryview) and event.nbytes > MAX_EVENT_SIZE


def large_event_bytes(event: Any) -> bytes:
    """``event`` as immutable bytes (a bytearray or memoryview is copied once), checked against
    :data:`MAX_LARGE_EVENT_SIZE`."""
    if type(event) is not bytes:
        if not isinstance(event, (bytes, bytearray, memoryview)):
            raise TypeError(f"an event is bytes-like, not {type(event).__name__}")
        event = bytes(event)
    if len(event) > MAX_LARGE_EVENT_SIZE:
        raise InvalidMessageError(
            f"event of {len(event)} bytes exceeds the {MAX_LARGE_EVENT_SIZE}-byte limit")
    return event


def _chunks(event: bytes) -> List[Tuple[int, Any]]:
    """``(offset, data)`` of each chunk of the event's Event record: the first carries the
    8-byte header (one copy of at most 8 MiB), the rest are views of ``event``."""
    view = memoryview(event)
    first = CHUNK_SIZE - _EVENT_HEADER.size
    out: List[Tuple[int, Any]] = [(0, _EVENT_HEADER.pack(0, len(event)) + event[:first])]
    offset = len(out[0][1])
    for start in range(first, len(event), CHUNK_SIZE):
        data = view[start:start + CHUNK_SIZE]
        out.append((offset, data))
        offset += len(data)
    return out


class _Restart(ConnectionFailedError):
    """The transient segment cannot be completed: start again on a new one."""


async def write_large_event(pool: Any, where: Any, segment: str, event: bytes, *,
                            writer_id: uuid.UUID, token_provider: TokenProvider,
                            retry: RetryPolicy = RetryPolicy(),
                            timeout: float = DEFAULT_REQUEST_TIMEOUT,
                            window: int = CHUNKS_IN_FLIGHT) -> int:
    """Write ``event`` (bytes, any size up to :data:`MAX_LARGE_EVENT_SIZE`) to ``segment``
    through a transient segment; returns the segment's length after the merge. ``where`` is
    what a SegmentWriter takes (a locator, an endpoint or a function). Raises
    SegmentSealedError, NoSuchSegmentError, AuthenticationError, ServerError (no large-event
    support) or RetriesExhaustedError."""
    if type(window) is not int or window < 1:
        raise ValueError(f"window must be an int >= 1, not {window!r}")
    locator: SegmentLocator = as_locator(where)
    chunks = _chunks(event)
    expired = False

    async def attempt() -> int:
        nonlocal expired
        token = await token_provider(segment, expired)
        expired = False
        client = RawClient(pool, _endpoint(await locator.get_endpoint(segment)),
                           timeout=timeout)
        try:
            return await _write_once(client, segment, chunks, writer_id, token, window)
        except (ConnectionFailedError, TokenExpiredError) as e:
            if isinstance(e, TokenExpiredError):
                expired = True
            else:
                locator.invalidate(segment)
            raise
        finally:
            await client.close()

    return await retry.run(attempt, retry_on=_retryable,
                           what=f"large event of {len(event)} bytes to {segment}")


async def _write_once(client: RawClient, parent: str, chunks: List[Tuple[int, Any]],
                      writer_id: uuid.UUID, token: str, window: int) -> int:
    created = await client.request(C.CreateTransientSegment, writer_id=writer_id,
                                   parent_segment=parent, delegation_token=token)
    _expect(created, C.SegmentCreated, parent, None)
    name = created.segment
    try:
        return await _fill_and_merge(client, parent, name, chunks, writer_id, token, window)
    except Exception:
        if not client.closed:  # a refused merge (sealed target...): do not leave it behind
            try:
                await client.request(C.DeleteSegment, segment=name, delegation_token=token)
            except Exception as e:  # noqa: BLE001 - best effort: the store drops it with the
                log.debug("could not delete %s: %r", name, e)  # connection anyway
        raise


async def _fill_and_merge(client: RawClient, parent: str, name: str,
                          chunks: List[Tuple[int, Any]], writer_id: uuid.UUID, token: str,
                          window: int) -> int:
    setup = await client.request(C.SetupAppend, writer_id=writer_id, segment=name,
                                 delegation_token=token)
    _expect(setup, C.AppendSetup, parent, name)
    if setup.last_event_number != C.NULL_ATTRIBUTE_VALUE:
        raise _Restart(f"transient segment {name} was written to already")
    pending: Deque[asyncio.Future] = collections.deque()
    try:
        for number, (offset, data) in enumerate(chunks):
            while len(pending) >= window or (pending and pending[0].done()):
                _expect(await pending.popleft(), C.DataAppended, parent, name)
            pending.append(asyncio.ensure_future(client.send_request(
                lambda rid, n=number, o=offset, d=data:
                C.ConditionalBlockEnd(writer_id, n, o, d, rid))))
        while pending:
            _expect(await pending.popleft(), C.DataAppended, parent, name)
    finally:
        for future in pending:  # a failure: the client closes and fails the rest
            future.cancel()
    merged = await client.request(C.MergeSegments, target=parent, source=name,
                                  delegation_token=token)
    _expect(merged, C.SegmentsMerged, parent, name)
    return merged.new_target_write_offset


def _expect(reply: Any, kind: type, parent: str, transient: Optional[str]) -> None:
    """Raise the error for ``reply`` unless it is a ``kind``. Replies that mean the transient
    segment is not in the state this attempt made (Java: "a bug, retried") start again; any
    other is the typed error for the target (NoSuchSegment included, as in Java: the store
    names the merge's source when either segment is missing)."""
    if type(reply) is kind:
        return
    if isinstance(reply, _RESTART_REPLIES):
        log.warning("%r while writing a large event to %s through %s: starting again", reply,
                    parent, transient)
        raise _Restart(f"large event to {parent}: {type(reply).__name__} for {transient}")
    raise _reply_error(parent, reply)


class LargeEventGate:
    """While large events of a SegmentWriter are being written, its other writes wait here.

    The writer hands every write to the gate while ``writer._large`` is set (see
    ``SegmentWriter._enqueue``); one task writes the large events in order, each after the
    writes before it are acknowledged, and releases the writes after each large event into the
    writer once the event is merged. When a large event fails, the writer fails with that
    error, which then also carries the large event and every held event in ``unacknowledged``.
    """

    def __init__(self, writer: Any):
        self._writer = writer
        #: ``(large event, future)`` or ``(data, count, size, future)``, in write order.
        self._queue: Deque[tuple] = collections.deque()
        self._task: Optional[asyncio.Task] = None

    def add_large(self, event: bytes, future: Optional[asyncio.Future]) -> None:
        self._queue.append((event, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def hold(self, data: bytes, count: int, size: int, future: Any) -> None:
        self._queue.append((data, count, size, future))

    async def wait(self, timeout: Optional[float] = None) -> None:
        """Until every large event and write held so far is handed over (or failed);
        TimeoutError after ``timeout`` seconds (the writes stay queued)."""
        task = self._task
        if task is None or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait((task,), timeout=timeout)
        if not done:
            raise TimeoutError(f"large events to {self._writer.segment} not written within "
                               f"{timeout} s")

    async def _run(self) -> None:
        writer, queue = self._writer, self._queue
        try:
            while queue:
                event, future = queue[0]
                await writer._flush_appends()  # the events before it, acknowledged
                try:
                    await write_large_event(
                        writer._pool, writer._locator, writer.segment, event,
                        writer_id=writer.writer_id, token_provider=writer._tokens,
                        retry=writer.config.retry, timeout=writer.config.setup_timeout)
                except asyncio.CancelledError:
                    raise
                except BaseException as e:  # noqa: BLE001 - every failure ends the writer
                    writer._fail(e)
                    return
                queue.popleft()
                writer.acked_events += 1
                if future is not None and not future.done():
                    future.set_result(None)
                writer._large = None  # release the held writes, up to the next large event
                while queue and len(queue[0]) == 4:
                    writer._enqueue(*queue.popleft())
                if queue:
                    writer._large = self
                    writer._run_payloads = writer._run_sent = None
        except BaseException as e:  # noqa: BLE001 - a failed flush (the writer failed)
            if not isinstance(e, asyncio.CancelledError):
                self.abort(e)
        finally:
            if writer._large is self:
                writer._large = None
            self._task = None

    def abort(self, error: BaseException) -> None:
        """The writer failed or closed: fail what waits here, and add the events to
        ``error.unacknowledged`` (after the writer's own)."""
        from .writer import split_events  # the writer imports this module

        queue, self._queue = self._queue, collections.deque()
        if self._writer._large is self:
            self._writer._large = None
        unacknowledged = getattr(error, "unacknowledged", None)
        if unacknowledged is None:
            unacknowledged = []
            try:
                error.unacknowledged = unacknowledged  # type: ignore[attr-defined]
            except AttributeError:
                pass
        for item in queue:
            future = item[-1]
            if len(item) == 2:
                unacknowledged.append(item[0])
            else:
                unacknowledged.extend(split_events(item[0], item[1]))
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()


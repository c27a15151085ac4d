"""The segment reader: a segment's bytes, and the events in them, over a pooled flow.

Behaviour follows Pravega's ``AsyncSegmentInputStreamImpl`` / ``SegmentInputStreamImpl``: one
``ReadSegment`` outstanding at a time with the fixed request id ``flow_id << 32``, the next one
sent as soon as a reply arrives while the buffer has room (prefetch); ``SegmentIsSealed`` means
end of segment; ``SegmentIsTruncated`` and ``NoSuchSegment`` raise
:class:`~pravega_wire.errors.SegmentTruncatedError`; WrongHost, expired tokens, lost connections
and replies for the wrong offset are retried with backoff from the same offset.

Reads at the tail. A segment store holds a ``ReadSegment`` at (or past) the tail of an open
segment until data arrives (then it answers at once with the new bytes), the segment is sealed
(``SegmentIsSealed``) or its hold expires (Pravega's store: about two minutes; then an empty
``SegmentRead`` with ``at_tail``, after which the reader simply sends the same read again). As in
Java, a read has no reply timeout: the reader keeps its one read outstanding for as long as the
store holds it, and a ``read_event(timeout=...)`` / ``read(timeout=...)`` that times out leaves
it outstanding for the next call. A dead store or connection is found by the connection itself
(:class:`~pravega_wire.connection.ConnectionConfig` ``keepalive_interval`` and
``read_timeout``: a KeepAlive goes out when nothing arrived for an interval, the store echoes
it, and a connection silent for ``read_timeout`` fails its flows); the reader then reconnects.

Reading past the end of a *sealed* segment makes Pravega's store close the whole connection
(every flow on it loses its pending reply). A reader therefore never sends a read at an offset it
has not seen to be within the segment: before the first read beyond what it has received (a
reader created with ``offset`` > 0) it asks for the segment's info on its own flow (request id
``flow_id << 32 | 1``); an offset past the end of a sealed segment is then the end
(:class:`EndOfSegment`), never a read.

Delegation tokens: as Java's reader does, a reader with a token provider asks it for the token
of every ``ReadSegment`` (so a provider that renews its token before it expires, such as
:class:`~pravega_wire.client._common.CachingTokenProvider`, keeps a long-lived connection's
reads authorized). ``expired=True`` is passed after the store refused a token as expired, and
when the provider handed out a JWT whose ``exp`` has already passed by the local clock: such a
token is never sent, because the store refuses a read for an expired token with the read offset
where the request id belongs (Java's ``PravegaRequestProcessor.readSegment``), a refusal no flow
receives. Without a provider (:func:`~pravega_wire.client._common.no_token`, auth off) every
read carries ``""`` and is sent at once.

Payloads are not copied more than once: an event that lies inside one received chunk comes back
as a ``memoryview`` of it; only an event that spans chunks is assembled (one copy, ``bytes``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import struct
import sys
import time
from typing import Any, List, Optional, Union

from .. import commands as C
from ..codec import split_events as _split_events
from ..errors import (AuthenticationError, ConnectionClosedError, ConnectionFailedError,
                      IncompatibleVersionError, InvalidMessageError, RetriesExhaustedError,
                      SegmentTruncatedError, TimeoutError, TokenExpiredError, WrongHostError)
from ._common import (CachingTokenProvider, Failures, FlowRelay, RetryPolicy, SegmentLocator,
                      TokenProvider, as_locator, no_token, open_flow, token_expiry)

__all__ = ["SegmentReader", "EndOfSegment", "DEFAULT_BUFFER_SIZE", "DEFAULT_REPLY_TIMEOUT",
           "MAX_READ"]

log = logging.getLogger("pravega_wire.client.reader")

#: Bytes a reader buffers ahead of the caller (Java's default buffer).
DEFAULT_BUFFER_SIZE = 1024 * 1024
#: Largest single read the reader asks for (the server clamps to 2 MiB anyway).
MAX_READ = 2 * 1024 * 1024
#: Seconds the token provider may take to answer before the reader counts a failed attempt
#: (reads themselves have no reply timeout: see the module's documentation).
DEFAULT_REPLY_TIMEOUT = 30.0
#: Smallest read the reader asks for while its buffer has room (Java: 256 KiB).
_MIN_READ = 256 * 1024

_EVENT_HEADER = struct.Struct(">ii")
_unpack_header = _EVENT_HEADER.unpack_from
_ASYNC_TIMEOUTS = (asyncio.TimeoutError, TimeoutError)


def _expired_jwt(token: str) -> bool:
    """True if ``token`` is a JWT whose ``exp`` has passed by the local clock."""
    exp = token_expiry(token) if token else None
    return exp is not None and exp <= time.time()


class EndOfSegment(Exception):
    """The reader reached the end of a sealed segment, or its ``end_offset``."""


class SegmentReader:
    """Reads one segment from ``offset`` (and up to ``end_offset`` if given).

    ``await read_event()`` returns the next event's payload (a memoryview or bytes), raising
    :class:`EndOfSegment` at the end of a sealed segment or at ``end_offset``;
    ``await read(max_bytes)`` returns raw bytes. ``timeout`` bounds one call's wait for data
    (at the tail of a segment that is still written, a read waits for new data): when it
    passes, the call raises :class:`~pravega_wire.errors.TimeoutError` (an
    ``asyncio.TimeoutError`` too on Python 3.11+) and the read the store holds stays
    outstanding, for the next call to pick up.

    ``offset`` is the position of the next byte the caller gets. One coroutine reads at a time.

    ``token_provider`` (``async (segment, expired) -> token``) is asked for the token of every
    ``ReadSegment``; ``reply_timeout`` bounds its answer (reads themselves have no reply
    timeout, as in Java: a store holds a read at the tail for minutes). A provider that fails or
    does not answer in time counts as a failed attempt (a reconnect with backoff, as for a lost
    connection); when the ``retry`` policy's attempts run out the reader fails with
    RetriesExhaustedError whose ``__cause__`` is the last error. A provider that
    gives no awaitable, or a token that is not a ``str``, fails the reader with TypeError.
    Use a :class:`~pravega_wire.client._common.CachingTokenProvider` when fetching a token is
    costly: while its token is in force the reader takes it synchronously (no task per read).
    """

    def __init__(self, pool: Any, where: Any, segment: str, *, offset: int = 0,
                 end_offset: Optional[int] = None, buffer_size: int = DEFAULT_BUFFER_SIZE,
                 token_provider: TokenProvider = no_token, retry: RetryPolicy = RetryPolicy(),
                 reply_timeout: float = DEFAULT_REPLY_TIMEOUT):
        if not isinstance(segment, str) or not segment:
            raise TypeError(f"segment must be a non-empty str, not {segment!r}")
        for name, value in (("offset", offset), ("buffer_size", buffer_size)):
            if type(value) is not int:
                raise TypeError(f"{name} must be an int, not {value!r}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if end_offset is not None:
            if type(end_offset) is not int:
                raise TypeError(f"end_offset must be an int or None, not {end_offset!r}")
            if end_offset < offset:
                raise ValueError(f"end_offset {end_offset} is before offset {offset}")
        if buffer_size < 8:
            raise ValueError("buffer_size must be at least 8 bytes")
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {retry!r}")
        self._pool = pool
        self._locator: SegmentLocator = as_locator(where)
        self.segment = segment
        self._tokens = token_provider
        self._retry = retry
        self.buffer_size = buffer_size
        self.end_offset = end_offset
        #: ``flow_id << 32`` of the current flow (the request id of every ReadSegment).
        self.request_id = -1
        self._loop = asyncio.get_running_loop()
        self._chunks: collections.deque = collections.deque()  # memoryviews of received data
        self._buffered = 0
        #: Position of the next byte the caller gets.
        self.offset = offset
        self._fetch_offset = offset  # position of the next byte to request
        self._outstanding: Optional[int] = None  # offset of the read in flight
        # Offsets up to this one are known to lie within the segment (received, or below its
        # length): a read there can never be past the end of a sealed segment.
        self._known_end = 0
        # (length, token) of the read at _outstanding while the segment's info is asked first.
        self._checking: Optional[tuple] = None
        self._reply_timeout = reply_timeout
        self._overdue: Optional[asyncio.TimerHandle] = None  # fires if the token is late
        self._end = False  # the server said end of segment at _fetch_offset
        self._wanted = 0  # bytes the waiting caller needs buffered (may exceed buffer_size)
        self._error: Optional[BaseException] = None
        self._flow: Any = None
        self._listener: Optional[FlowRelay] = None
        self._token = ""
        self._token_expired = False  # the next token asked for must be a fresh one
        # Ask the provider for every read (with ``no_token``, reads are sent at once with "").
        self._token_per_read = token_provider is not no_token
        # A caching provider's token still in force is taken synchronously: no task per read
        # (and it renews a JWT before its expiry by its own clock: no check of ours needed).
        self._cached_token = (token_provider.cached
                              if isinstance(token_provider, CachingTokenProvider) else None)
        self._token_task: Optional[asyncio.Future] = None  # asking for the outstanding read
        self._waiter: Optional[asyncio.Future] = None
        self._connector: Optional[asyncio.Task] = None
        self._failures = Failures()  # consecutive, since the last reply that made progress
        self._closed = False
        #: Number of connections (flows) opened.
        self.connections = 0

    async def __aenter__(self) -> "SegmentReader":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the flow (a pooled connection stays open); a read in progress, and every
        later one, fails with ConnectionClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._connector = self._connector, None
        if task is not None and not task.done():
            task.cancel()
        self._drop_flow()
        self._fail(ConnectionClosedError(f"the reader of {self.segment} was closed"))

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned to the caller."""
        return self._buffered

    # ---- the caller's side ----------------------------------------------------------------

    async def read_event(self, *, timeout: Optional[float] = None) -> Union[memoryview, bytes]:
        """The next event's payload. Raises EndOfSegment at the end, TimeoutError if the event
        is not complete within ``timeout`` seconds (nothing is consumed then),
        SegmentTruncatedError, RetriesExhaustedError, InvalidMessageError on bytes that are not
        an Event record (``offset`` stays at the bad header)."""
        chunks = self._chunks
        if chunks and not self._closed:  # the common case: the whole event in the first chunk
            first = chunks[0]
            size = len(first)
            if size >= 8:
                kind, length = _unpack_header(first)
                end = 8 + length
                if kind == 0 and 8 <= end <= size:
                    if end == size:
                        chunks.popleft()
                    else:
                        chunks[0] = first[end:]
                    self._buffered -= end
                    self.offset += end
                    if self._outstanding is None:
                        self._maybe_fetch()
                    return first[8:end]
        return await self._read_event(timeout)

    async def read_events(self, max_events: Optional[int] = None, *,
                          timeout: Optional[float] = None) -> List[Union[memoryview, bytes]]:
        """The payloads of the next events, in order: every complete event already buffered
        (at most ``max_events``, ≥ 1, if given), or, when none is, the next one as soon as it
        is complete (then whatever else is buffered after it). One call for many events: the
        batch form of :meth:`read_event`, with the same errors, raised only when no event
        comes before them (the events before a bad record or the end are returned first, and
        the next call raises). An event below ``pravega_wire.codec.VIEW_THRESHOLD`` bytes is a
        ``bytes`` copy (cheaper than a view for small events), a larger one a memoryview of the
        received data (an event split across two replies is always one ``bytes``)."""
        if max_events is None:
            limit = sys.maxsize
        elif type(max_events) is not int or max_events < 1:
            raise ValueError(f"max_events must be a positive int or None, not {max_events!r}")
        else:
            limit = max_events
        out: List[Union[memoryview, bytes]] = []
        if self._chunks and not self._closed:
            self._take_events(limit, out)
        if not out:
            out.append(await self._read_event(timeout))
            if limit > 1:
                self._take_events(limit - 1, out)
        if self._outstanding is None:
            self._maybe_fetch()
        return out

    def _take_events(self, limit: int, out: list) -> None:
        """Moves up to ``limit`` complete buffered events into ``out`` (no waiting)."""
        chunks = self._chunks
        taken = 0
        while chunks:
            first = chunks[0]
            events, used = _split_events(first, limit)
            if not used:
                break  # the next record spans chunks, or is not an Event: read_event's path
            out += events
            taken += used
            limit -= len(events)
            if used < len(first):
                chunks[0] = first[used:]
                break
            chunks.popleft()
            if not limit:
                break
        self._buffered -= taken
        self.offset += taken

    async def _read_event(self, timeout: Optional[float]) -> Union[memoryview, bytes]:
        if self._closed:
            raise ConnectionClosedError(f"the reader of {self.segment} is closed")
        deadline = None if timeout is None else self._loop.time() + timeout
        need = 8
        while True:
            if self._buffered >= 8:
                kind, length = _EVENT_HEADER.unpack(self._peek(8))
                if kind != 0:
                    raise InvalidMessageError(
                        f"{self.segment}: expected an Event record at offset {self.offset}, "
                        f"found type {kind}", offset=self.offset)
                if length < 0:
                    raise InvalidMessageError(
                        f"{self.segment}: negative event length {length} at offset "
                        f"{self.offset}", offset=self.offset)
                need = 8 + length
                if self._buffered >= need:
                    self._skip(8)
                    return self._take(length)
            await self._fill(need, deadline, timeout)

    async def read(self, max_bytes: int = MAX_READ, *,
                   timeout: Optional[float] = None) -> Union[memoryview, bytes]:
        """Up to ``max_bytes`` (≥ 1) of raw segment data, at least one byte, as soon as some is
        there. Raises EndOfSegment at the end."""
        if type(max_bytes) is not int or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive int, not {max_bytes!r}")
        if self._closed:
            raise ConnectionClosedError(f"the reader of {self.segment} is closed")
        deadline = None if timeout is None else self._loop.time() + timeout
        while not self._buffered:
            await self._fill(1, deadline, timeout)
        chunk = self._chunks[0]
        if len(chunk) <= max_bytes:
            self._chunks.popleft()
        else:
            self._chunks[0] = chunk[max_bytes:]
            chunk = chunk[:max_bytes]
        self._consumed(len(chunk))
        return chunk

    def _peek(self, n: int) -> bytes:
        first = self._chunks[0]
        if len(first) >= n:
            return first[:n]
        parts: List[memoryview] = []
        got = 0
        for chunk in self._chunks:
            parts.append(chunk[:n - got])
            got += len(parts[-1])
            if got >= n:
                break
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        chunks = self._chunks
        left = n
        while left:
            chunk = chunks[0]
            if len(chunk) <= left:
                chunks.popleft()
                left -= len(chunk)
            else:
                chunks[0] = chunk[left:]
                left = 0
        self._consumed(n)

    def _take(self, n: int) -> Union[memoryview, bytes]:
        if not n:
            return b""
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:  # inside one chunk: a view, no copy
            if len(first) == n:
                chunks.popleft()
            else:
                chunks[0] = first[n:]
            self._consumed(n)
            return first[:n]
        parts: List[memoryview] = []  # spans chunks: assembled once
        left = n
        while left:
            chunk = chunks[0]
            if len(chunk) <= left:
                parts.append(chunks.popleft())
                left -= len(chunk)
            else:
                parts.append(chunk[:left])
                chunks[0] = chunk[left:]
                left = 0
        self._consumed(n)
        return b"".join(parts)

    def _consumed(self, n: int) -> None:
        self._buffered -= n
        self.offset += n
        self._maybe_fetch()

    async def _fill(self, need: int, deadline: Optional[float], timeout: Optional[float]) -> None:
        """Wait until more data, the end, or an error arrives (``need`` bytes are wanted)."""
        if self._error is not None:
            raise self._error
        if self._end or (self.end_offset is not None and self._fetch_offset >= self.end_offset):
            # Nothing more will come: what is buffered is all there is.
            left = self._buffered
            raise EndOfSegment(f"end of {self.segment} at offset {self.offset + left}" + (
                f" ({left} bytes of an incomplete event remain)" if left else ""))
        if self._waiter is not None:
            raise RuntimeError(f"another coroutine is already reading {self.segment}")
        self._wanted = need
        waiter = self._waiter = self._loop.create_future()
        try:
            self._maybe_fetch()
            if deadline is None:
                await waiter
            else:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(waiter, remaining)
        except _ASYNC_TIMEOUTS:
            raise TimeoutError(f"no data from {self.segment} at offset {self.offset} within "
                               f"{timeout} s") from None
        finally:
            self._waiter = None
            self._wanted = 0
        if self._error is not None and self._buffered < need:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        """Sticky: every later read that needs more data than is buffered raises ``error``."""
        if self._error is None:
            self._error = error
        self._wake()

    # ---- fetching -------------------------------------------------------------------------

    def _maybe_fetch(self) -> None:
        if (self._outstanding is not None or self._end or self._error is not None
                or self._closed):
            return
        room = max(self.buffer_size, self._wanted) - self._buffered
        if room <= 0:
            return
        end = self.end_offset
        if end is not None and self._fetch_offset >= end:
            return
        flow = self._flow
        if flow is None:
            if self._connector is None:
                self._connector = self._loop.create_task(self._connect())
            return
        length = min(max(min(_MIN_READ, self.buffer_size), room), MAX_READ)
        if end is not None:
            length = min(length, end - self._fetch_offset)
        self._outstanding = self._fetch_offset
        if self._token_per_read:
            self._ask_token(flow, length)
            return
        self._send_read(flow, self._fetch_offset, length, self._token)

    def _send_read(self, flow: Any, offset: int, length: int, token: str) -> None:
        """Send the ReadSegment, or first a GetStreamSegmentInfo if ``offset`` is not known to
        lie within the segment (:meth:`_segment_info` then sends the read); the flow is given
        up if the connection is gone."""
        try:
            if offset > self._known_end:
                self._checking = (length, token)
                flow.send(C.GetStreamSegmentInfo(self.request_id | 1, self.segment, token))
            else:
                flow.send(C.ReadSegment(self.segment, offset, length, token, self.request_id))
        except ConnectionFailedError as e:
            self._lost(e)

    def _ask_token(self, flow: Any, length: int) -> None:
        """Ask the token provider for the token of the read at ``_outstanding`` (set: no other
        read starts meanwhile), then send it on ``flow`` (:meth:`_token_ready`). The read's
        ``reply_timeout`` runs from now: it bounds the question and the reply together."""
        if self._token_task is not None:
            # A reply matched the read before it was sent (a stale duplicate): its answer
            # was taken, so that question is moot.
            self._abandon_token()
        offset = self._outstanding
        expired = self._token_expired
        if self._cached_token is not None and not expired:
            token = self._cached_token(self.segment)
            if token is not None:
                self._token = token
                self._send_read(flow, offset, length, token)
                return
        try:
            asking = self._tokens(self.segment, expired)
        except Exception as e:  # noqa: BLE001 - a failed attempt, retried
            self._lost(e)
            return
        try:
            task = asyncio.ensure_future(asking)
        except TypeError:
            self._drop_flow()
            self._fail(TypeError(f"the token provider for {self.segment} returned "
                                 f"{type(asking).__name__}, not an awaitable"))
            return
        self._token_task = task
        self._overdue = self._loop.call_later(self._reply_timeout, self._token_overdue)
        task.add_done_callback(functools.partial(self._token_ready, flow, offset, length,
                                                 expired))

    def _token_ready(self, flow: Any, offset: int, length: int, expired: bool,
                     task: asyncio.Future) -> None:
        if task is not self._token_task:  # abandoned (flow dropped, reader closed, timed out)
            if not task.cancelled():
                task.exception()  # retrieved: never logged
            return
        self._token_task = None
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None
        if task.cancelled():  # the provider's own awaitable was cancelled
            self._lost(ConnectionFailedError(
                f"the token provider for {self.segment} was cancelled"))
            return
        error = task.exception()
        if error is not None:
            log.debug("reader %s: the token provider failed: %r", self.segment, error)
            self._lost(error)
            return
        token = task.result()
        if type(token) is not str:
            self._drop_flow()
            self._fail(TypeError(f"the token provider for {self.segment} returned "
                                 f"{type(token).__name__}, not str"))
            return
        if self._closed or self._flow is not flow or self._outstanding != offset:
            return  # cannot happen while the task is current; nothing to send it for
        if not expired and self._cached_token is None and _expired_jwt(token):
            # The store would refuse it with a reply no flow receives: ask for a fresh one
            # (once: a fresh token the local clock calls expired is sent, the store decides).
            self._token_expired = True
            self._ask_token(flow, length)
            return
        self._token_expired = False
        self._token = token
        self._send_read(flow, offset, length, token)

    def _abandon_token(self) -> None:
        """Withdraw the question for a token (its answer will be ignored)."""
        task, self._token_task = self._token_task, None
        if task is not None:
            task.cancel()

    def _answered(self) -> None:
        """The outstanding read got its reply (or was abandoned)."""
        self._outstanding = None
        self._checking = None
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None

    def _token_overdue(self) -> None:
        """The token provider did not answer within ``reply_timeout`` s (the read was never
        sent): withdraw the question and reconnect (the token was not refused: no fresh one is
        demanded)."""
        self._overdue = None
        task, self._token_task = self._token_task, None
        if task is not None:
            task.cancel()
            self._lost(TimeoutError(f"no token for a read of {self.segment} at offset "
                                    f"{self._outstanding} within {self._reply_timeout} s"))

    async def _connect(self) -> None:
        try:
            await self._retry.run(
                self._open, retry_on=self._open_failed, failures=self._failures,
                what=f"reader of {self.segment} at offset {self._fetch_offset}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - retries exhausted, or not retryable
            self._fail(e)
            return
        finally:
            if self._connector is asyncio.current_task():
                self._connector = None
        self._maybe_fetch()

    def _open_failed(self, e: BaseException) -> bool:
        """Whether a failed connection attempt is retried (after dropping the cached
        location)."""
        if isinstance(e, IncompatibleVersionError):  # no retry can fix that
            return False
        self._locator.invalidate(self.segment)
        log.debug("reader %s: connecting failed: %r", self.segment, e)
        return True

    async def _open(self) -> None:
        endpoint = await self._locator.get_endpoint(self.segment)
        if not self._token_per_read:  # else each read asks for its token
            self._token = await self._tokens(self.segment, self._token_expired)
            self._token_expired = False
        listener = self._listener = FlowRelay(self._on_reply, self._on_lost)
        flow = await open_flow(self._pool.open_flow(endpoint, listener))
        if not listener.active:  # lost while the flow was being opened
            flow.close()
            raise ConnectionFailedError(f"the connection to {endpoint} was lost while opening")
        self._flow = flow
        self.request_id = flow.flow_id << 32
        self.connections += 1

    def _drop_flow(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.active = False
        flow, self._flow = self._flow, None
        if flow is not None:
            flow.close()
        if self._token_task is not None:
            self._abandon_token()
        self._answered()

    def _lost(self, cause: BaseException) -> None:
        """Give up the flow; reconnect (with backoff) and re-issue the read from the same
        offset."""
        log.debug("reader %s: reconnecting after %r", self.segment, cause)
        self._drop_flow()
        if isinstance(cause, IncompatibleVersionError):
            self._fail(cause)
            return
        # Ask where the segment lives afresh (Java asks the controller on every reconnect):
        # the store may be gone and the segment served elsewhere.
        self._locator.invalidate(self.segment)
        self._failures.failed(cause)
        self._maybe_fetch()

    # ---- replies (through the flow's listener) ---------------------------------------------

    def _on_lost(self, listener: FlowRelay, exc: Optional[BaseException]) -> None:
        self._lost(exc or ConnectionFailedError("connection lost"))

    def _on_reply(self, reply: Any) -> None:
        t = type(reply)
        if t is C.SegmentRead:
            self._segment_read(reply)
        elif t is C.Hello or t is C.KeepAlive:
            return
        elif t is C.StreamSegmentInfo:
            self._segment_info(reply)
        elif t is C.SegmentIsSealed:
            # A held read whose segment was sealed: the end at the read's offset (Java's reader
            # takes it for an empty SegmentRead with endOfSegment).
            if reply.offset in (self._outstanding, -1) and self._outstanding is not None:
                self._answered()
                self._failures.reset()
                self._end = True
                self._wake()
        elif t is C.SegmentIsTruncated:
            self._drop_flow()
            self._fail(SegmentTruncatedError(
                f"{self.segment}: offset {self._fetch_offset} is no longer readable; the "
                f"segment now starts at {reply.start_offset}", start_offset=reply.start_offset))
        elif t is C.NoSuchSegment:
            self._drop_flow()
            self._fail(SegmentTruncatedError(
                f"{self.segment}: offset {self._fetch_offset} is no longer readable; the "
                "segment no longer exists"))
        elif t is C.WrongHost:  # _lost asks the locator afresh
            self._lost(WrongHostError(f"{self.segment} is not on this store"))
        elif t is C.AuthTokenCheckFailed:
            if reply.error_code == C.AuthTokenCheckFailed.TOKEN_EXPIRED:
                self._token_expired = True
                self._lost(TokenExpiredError(f"the delegation token for {self.segment} expired"))
            else:
                self._drop_flow()
                self._fail(AuthenticationError(
                    f"the segment store rejected the token for {self.segment} "
                    f"(code {reply.error_code})"))
        else:  # ErrorMessage, OperationUnsupported, anything unexpected
            self._lost(ConnectionFailedError(f"reader of {self.segment}: unexpected reply "
                                             f"{reply!r}"))

    def _segment_info(self, reply: Any) -> None:
        """The answer to the info asked before a read beyond :attr:`_known_end`."""
        checking, self._checking = self._checking, None
        offset, flow = self._outstanding, self._flow
        if (checking is None or offset is None or flow is None
                or reply.request_id != self.request_id | 1 or reply.segment_name != self.segment):
            self._lost(InvalidMessageError(f"unexpected {reply!r} for the reader of "
                                           f"{self.segment}"))
            return
        if not reply.exists or reply.is_deleted:
            self._drop_flow()
            self._fail(SegmentTruncatedError(
                f"{self.segment}: offset {offset} is not readable; the segment does not exist"))
            return
        size = reply.write_offset
        if offset <= size:
            self._known_end = max(self._known_end, size)
        elif reply.is_sealed:  # a read there would make the store close the connection
            log.debug("reader %s: offset %d is past the end (%d) of the sealed segment",
                      self.segment, offset, size)
            self._answered()
            self._failures.reset()
            self._end = True
            self._wake()
            return
        # Within the segment, or past the end of an open one (held there like a tail read).
        self._failures.reset()
        length, token = checking
        try:
            flow.send(C.ReadSegment(self.segment, offset, length, token, self.request_id))
        except ConnectionFailedError as e:
            self._lost(e)

    def _segment_read(self, reply: Any) -> None:
        if reply.segment != self.segment or reply.offset != self._outstanding:
            self._lost(InvalidMessageError(
                f"SegmentRead for {reply.segment}@{reply.offset}, expected "
                f"{self.segment}@{self._outstanding}"))
            return
        self._answered()
        self._failures.reset()
        data = reply.data
        if type(data) is not memoryview:
            data = memoryview(data)
        if data.format != "B" or data.ndim != 1:
            data = data.cast("B")
        n = len(data)
        end = self.end_offset
        if end is not None and self._fetch_offset + n > end:  # never hand out bytes past it
            n = end - self._fetch_offset
            data = data[:n]
        if n:
            self._chunks.append(data)
            self._buffered += n
            self._fetch_offset += n
            if self._fetch_offset > self._known_end:
                self._known_end = self._fetch_offset
        if reply.end_of_segment:
            self._end = True
        self._maybe_fetch()
        if n or self._end:
            self._wake()

    def __repr__(self) -> str:
        return (f"<SegmentReader {self.segment!r} offset={self.offset} "
                f"buffered={self._buffered} end_offset={self.end_offset}>")

"""EventStreamWriter: events to a stream by routing key, following the stream as it scales.

As Java's ``EventStreamWriter`` does, the writer routes each event to the segment whose key
range holds the hash of its routing key (the hash of Java's client,
:func:`~pravega_wire.client.controller.hash_routing_key`), and when a segment store answers that
a segment is sealed (a scale, or the stream was sealed) it asks the controller for the
segment's successors (``getSegmentsImmediatelyFollowing``), routes the sealed segment's key range
to them and writes the sealed segment's unacknowledged events again, each to the successor that
holds its routing key, before any later event. So events with one routing key keep their order,
and each is stored once (a store answers ``SetupAppend`` on a sealed segment with the writer's
last stored event number, so what is unacknowledged then was not stored).

A segment with no successors means the stream is sealed: the write or flush raises
:class:`StreamSealedError` with the events that were not stored.

::

    async with EventStreamWriter(pool, controller, "scope", "stream") as writer:
        await writer.write(b"event", routing_key="order-17")
        await writer.flush()
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from ..errors import ConnectionClosedError, SegmentSealedError
from ._common import CachingTokenProvider
from .controller import SegmentWithRange, hash_routing_key
from .stream import _token_provider
from .writer import EventWriterConfig, SegmentWriter

__all__ = ["EventStreamWriter", "StreamSealedError", "KeyRouter"]


def writer_options(config: EventWriterConfig,
                   tokens: CachingTokenProvider | None) -> dict[str, Any]:
    """The keyword arguments of the SegmentWriters of a stream writer: its ``config`` and,
    with auth, its cached ``tokens``."""
    if tokens is None:
        return {"config": config}
    return {"config": config, "token_provider": tokens}


class StreamSealedError(SegmentSealedError):
    """The stream is sealed: nothing follows the sealed segment. ``unacknowledged`` holds the
    events that were not stored, in order."""


@dataclasses.dataclass(frozen=True)
class _Route:
    """Keys in ``[min_key, max_key)`` go to ``segment``."""

    min_key: float
    max_key: float
    segment: SegmentWithRange


class KeyRouter:
    """Which segment an event goes to, by the hash position of its routing key (a random
    position without a key): the route whose ``[min_key, max_key)`` holds it. Routes start as a
    stream's segments; :meth:`replace` hands a sealed segment's range to its successors."""

    def __init__(self, segments: Sequence[SegmentWithRange]):
        self._routes = [_Route(s.min_key, s.max_key, s) for s in segments]
        self._sort()
        self._position = hash_routing_key  # compiled (~0.1 us a key): no cache needed

    def _sort(self) -> None:
        self._routes.sort(key=lambda route: route.max_key)
        self._max_keys = [route.max_key for route in self._routes]

    @property
    def segments(self) -> list[SegmentWithRange]:
        """The segments routed to, in key order, each once."""
        seen: dict[int, SegmentWithRange] = {}
        for route in self._routes:
            seen.setdefault(route.segment.segment_id, route.segment)
        return list(seen.values())

    def segment_for(self, routing_key: str | None) -> SegmentWithRange:
        """The segment of the route with the smallest ``max_key`` at or above the key's
        position (Java's ``ceilingEntry``)."""
        if not self._routes:
            raise ValueError("no segments to route to")
        position = random.random() if routing_key is None else self._position(routing_key)
        index = bisect.bisect_left(self._max_keys, position)
        return self._routes[min(index, len(self._routes) - 1)].segment

    def replace(self, segment_id: int, successors: Sequence[SegmentWithRange]) -> None:
        """Route the key ranges of ``segment_id`` to the ``successors`` that overlap them."""
        kept, replaced = [], []
        for route in self._routes:
            (replaced if route.segment.segment_id == segment_id else kept).append(route)
        for route in replaced:
            for successor in successors:
                low = max(route.min_key, successor.min_key)
                high = min(route.max_key, successor.max_key)
                if low < high:
                    kept.append(_Route(low, high, successor))
        self._routes = kept
        self._sort()
        self._coalesce()

    def _coalesce(self) -> None:
        """Join adjacent routes to one segment, so that there are never more routes than
        segments routed to, however many scales the routes went through (a segment split
        again after a merge at another point would otherwise leave its pieces behind)."""
        joined: list[_Route] = []
        for route in self._routes:
            last = joined[-1] if joined else None
            if last is not None and last.segment.segment_id == route.segment.segment_id \
                    and last.max_key == route.min_key:
                joined[-1] = _Route(last.min_key, route.max_key, route.segment)
            else:
                joined.append(route)
        if len(joined) != len(self._routes):
            self._routes = joined
            self._max_keys = [route.max_key for route in joined]

    @property
    def route_count(self) -> int:
        """The number of key ranges routed (at most the number of segments routed to)."""
        return len(self._routes)


#: A lane drops the keys of acknowledged events every this many events (so it keeps at most
#: this many more keys than there are unacknowledged events).
_TRIM_EVERY = 1024


class _Lane:
    """The writer of one segment and the routing keys of its last events, those not yet
    acknowledged among them."""

    def __init__(self, writer: SegmentWriter):
        self.writer = writer
        self.keys: collections.deque[str | None] = collections.deque()
        self.written = 0

    def wrote(self, routing_key: str | None) -> None:
        self.keys.append(routing_key)
        self.written += 1
        if self.written % _TRIM_EVERY == 0:
            for _ in range(len(self.keys) - (self.written - self.writer.acked_events)):
                self.keys.popleft()

    def unacknowledged(self, error: BaseException) -> list[tuple[str | None, bytes]]:
        """``(routing key, event)`` of each event the failed writer had not had acknowledged."""
        events = list(getattr(error, "unacknowledged", ()))
        if len(events) > len(self.keys):
            raise RuntimeError(f"{len(events)} events unacknowledged by {self.writer.segment}, "
                               f"but only {len(self.keys)} routing keys kept")
        keys = list(self.keys)[len(self.keys) - len(events):] if events else []
        return list(zip(keys, events))


class EventStreamWriter:
    """Writes events to stream ``scope/stream`` by routing key, following its scaling.

    ``controller`` is a :class:`~pravega_wire.client.controller.ControllerClient` (it locates
    segments, names successors and, with ``auth``, issues the delegation tokens, cached for all
    the segment writers). ``config`` goes to every segment writer. Use ``async with`` or
    :meth:`close`. Belongs to the event loop it was created on.
    """

    def __init__(self, pool: Any, controller: Any, scope: str, stream: str, *,
                 config: EventWriterConfig = EventWriterConfig(), auth: bool = False):
        self._pool = pool
        self._controller = controller
        self.scope = scope
        self.stream = stream
        self.config = config
        self._tokens = _token_provider(controller, scope, stream) if auth else None
        self._router: KeyRouter | None = None
        self._lanes: dict[int, _Lane] = {}
        self._lock = asyncio.Lock()  # one re-routing at a time
        self._closed = False
        self._stream_sealed = False
        #: Sealed segments handed to their successors so far.
        self.segments_sealed = 0

    async def __aenter__(self) -> EventStreamWriter:
        await self._routes()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self._release()

    async def _routes(self) -> KeyRouter:
        if self._router is None:
            segments = await self._controller.get_current_segments(self.scope, self.stream)
            if not segments:
                raise StreamSealedError(f"stream {self.scope}/{self.stream} is sealed")
            self._router = KeyRouter(segments)
        return self._router

    @property
    def segments(self) -> list[SegmentWithRange]:
        """The segments events are routed to now."""
        return self._router.segments if self._router is not None else []

    def _lane(self, segment: SegmentWithRange) -> _Lane:
        lane = self._lanes.get(segment.segment_id)
        if lane is None:
            lane = _Lane(SegmentWriter(self._pool, self._controller, segment.name,
                                       **writer_options(self.config, self._tokens)))
            self._lanes[segment.segment_id] = lane
        return lane

    # ---- writing ---------------------------------------------------------------------------

    async def write(self, event: Any, routing_key: str | None = None) -> SegmentWithRange:
        """Write one event (bytes-like; over 8 MiB, up to 1 GiB, it is a large event, written
        through a transient segment: :mod:`.largeevents`), waiting while its segment writer has
        too many bytes unacknowledged or a large event in progress; returns the segment it went
        to. Does not wait for the acknowledgement (:meth:`flush` does). A large event refused
        by a sealed segment is written again, whole, to the successor of its routing key."""
        if self._closed:
            raise ConnectionClosedError(f"the writer for {self.scope}/{self.stream} is closed")
        router = self._router or await self._routes()
        while True:
            if self._stream_sealed:
                raise StreamSealedError(f"stream {self.scope}/{self.stream} is sealed",
                                        [bytes(event)])
            segment = router.segment_for(routing_key)
            lane = self._lane(segment)
            try:
                await lane.writer.write(event)
            except SegmentSealedError as sealed:
                try:
                    await self._handle_sealed(segment.segment_id, lane, sealed)
                except StreamSealedError as end:
                    end.unacknowledged.append(bytes(event))
                    raise
                continue
            lane.wrote(routing_key)
            return segment

    async def flush(self) -> None:
        """Wait until every event written so far is stored, re-routing the events of segments
        found sealed meanwhile. Raises StreamSealedError when the stream is sealed, and a
        segment writer's error (with its ``unacknowledged`` events) when one fails otherwise."""
        ended: StreamSealedError | None = None  # all the events a sealed stream refused
        while True:
            lanes = list(self._lanes.items())
            results = await asyncio.gather(*(lane.writer.flush() for _, lane in lanes),
                                           return_exceptions=True)
            sealed = [(segment_id, lane, result)
                      for (segment_id, lane), result in zip(lanes, results)
                      if isinstance(result, SegmentSealedError)]
            for result in results:
                if isinstance(result, BaseException) and \
                        not isinstance(result, SegmentSealedError):
                    raise result
            if not sealed:
                break
            for segment_id, lane, error in sealed:
                try:
                    await self._handle_sealed(segment_id, lane, error)
                except StreamSealedError as end:
                    if ended is None:
                        ended = end
                    else:
                        ended.unacknowledged.extend(end.unacknowledged)
        if ended is not None:
            raise ended

    async def _handle_sealed(self, segment_id: int, lane: _Lane,
                             error: SegmentSealedError) -> None:
        """Hand the sealed segment's key ranges to its successors and write its unacknowledged
        events there (once, however many callers saw the seal)."""
        async with self._lock:
            if self._lanes.get(segment_id) is lane:
                await self._reroute(segment_id, lane, error)

    async def _reroute(self, segment_id: int, lane: _Lane, error: SegmentSealedError) -> None:
        """:meth:`_handle_sealed` with the lock held. A successor found sealed too (scaled again
        meanwhile) is handed on first; when the stream is sealed, the StreamSealedError carries
        every event not stored."""
        router = await self._routes()
        successors = [s.segment for s in await self._controller.get_successors(
            self.scope, self.stream, segment_id)]
        pending = lane.unacknowledged(error)
        del self._lanes[segment_id]
        await lane.writer.close(flush=False)
        if not successors:
            self._stream_sealed = True
            raise StreamSealedError(
                f"stream {self.scope}/{self.stream} is sealed (segment {segment_id} has no "
                "successors)", [event for _, event in pending])
        router.replace(segment_id, successors)
        self.segments_sealed += 1
        for index, (routing_key, event) in enumerate(pending):
            try:
                while True:
                    segment = router.segment_for(routing_key)
                    target = self._lane(segment)
                    failure = target.writer.failure
                    if not isinstance(failure, SegmentSealedError):
                        break
                    await self._reroute(segment.segment_id, target, failure)
            except StreamSealedError as end:
                end.unacknowledged.extend(data for _, data in pending[index:])
                raise
            target.writer.write_nowait(event)
            target.wrote(routing_key)

    # ---- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush (re-routing as needed), then release every segment writer (also when the
        flush fails, which then raises)."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            await self._release()

    async def _release(self) -> None:
        self._closed = True
        lanes, self._lanes = list(self._lanes.values()), {}
        await asyncio.gather(*(lane.writer.close(flush=False) for lane in lanes),
                             return_exceptions=True)

"""A small stream facade: events with routing keys to a stream's segments by key range, and
readers for all of a stream's segments. Enough for the demo; not reader groups, and no scaling:
when a segment is sealed its writer fails with SegmentSealedError, whose ``unacknowledged``
events the caller can write again after fetching the stream's new segments.

With ``auth=True`` the segment clients get their delegation tokens from the controller through
one :class:`~pravega_wire.client._common.CachingTokenProvider` per StreamWriter or
:func:`stream_readers` call: a token is fetched once and again only when it nears its expiry or
a store refused it as expired (readers ask for a token for every read)."""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_left
from typing import Any, Dict, List, Optional, Sequence

from ..routing import KeyRanges, hash_routing_key
from ._common import CachingTokenProvider
from .controller import SegmentWithRange, parse_segment_name
from .reader import SegmentReader
from .writer import EventWriterConfig, SegmentWriter

__all__ = ["StreamWriter", "stream_readers"]

#: Deprecated, unused: the routing-key hash is compiled and needs no cache (kept for imports).
ROUTING_CACHE_SIZE = 4096


def _token_provider(controller: Any, scope: str, stream: str) -> CachingTokenProvider:
    """The stream's delegation tokens from ``controller.get_delegation_token``, cached."""
    async def fetch(segment: str, expired: bool) -> str:
        return await controller.get_delegation_token(scope, stream)
    return CachingTokenProvider(fetch)


def segment_token_provider(controller: Any) -> CachingTokenProvider:
    """Delegation tokens for any segment, each from ``controller.get_delegation_token`` for
    the stream its qualified name names (a table segment's or a reader group's state
    ``_RGstate<group>`` stream included), cached per stream. With auth off the controller
    answers ``""`` once per stream, which is kept."""
    async def fetch(segment: str, expired: bool) -> str:
        scope, stream, _ = parse_segment_name(segment)
        return await controller.get_delegation_token(scope, stream)
    return CachingTokenProvider(fetch)


class StreamWriter:
    """Routes each event to the segment whose key range holds its routing key (the same hash as
    Pravega's Java client, :func:`~pravega_wire.client.controller.segment_for_key`) and writes
    it with that segment's :class:`SegmentWriter`, opened on first use. Events with one routing
    key stay in order; events without one go to a random segment.

    ``controller`` locates segments (and issues tokens when ``auth`` is set: one cached token
    for all the segment writers, renewed when it nears its expiry).

    Placing an event is one hash (compiled, :mod:`pravega_wire.routing`) and one binary search
    over the segments' key ranges; nothing is cached per key, so a million distinct keys cost
    what one does.
    """

    def __init__(self, pool: Any, controller: Any, scope: str, stream: str,
                 segments: Sequence[SegmentWithRange], *,
                 config: EventWriterConfig = EventWriterConfig(), auth: bool = False):
        if not segments:
            raise ValueError(f"stream {scope}/{stream} is sealed or has no segments")
        self._pool = pool
        self._controller = controller
        self.scope = scope
        self.stream = stream
        self._ranges = KeyRanges(segments)
        self.segments: List[SegmentWithRange] = self._ranges.segments
        self._max_keys = self._ranges.max_keys
        self._last = len(self.segments) - 1
        self.config = config
        self._tokens = _token_provider(controller, scope, stream) if auth else None
        self._writers: Dict[int, SegmentWriter] = {}
        # The segment writer of each segment (by its index in ``segments``), once opened.
        self._by_index: List[Optional[SegmentWriter]] = [None] * len(self.segments)

    @classmethod
    async def open(cls, pool: Any, controller: Any, scope: str, stream: str,
                   **kwargs: Any) -> "StreamWriter":
        """A writer for the stream's current segments."""
        segments = await controller.get_current_segments(scope, stream)
        return cls(pool, controller, scope, stream, segments, **kwargs)

    def segment_for(self, routing_key: Optional[str]) -> SegmentWithRange:
        """The segment an event with ``routing_key`` goes to (the one with the smallest
        ``max_key`` at or above the key's hash position)."""
        return self.segments[self._index_of(routing_key)]

    def _index_of(self, routing_key: Optional[str]) -> int:
        index = bisect_left(self._max_keys,
                            _random() if routing_key is None else _hash(routing_key))
        return index if index < self._last else self._last

    def writer_for(self, segment: SegmentWithRange) -> SegmentWriter:
        writer = self._writers.get(segment.segment_id)
        if writer is None:
            kwargs: Dict[str, Any] = {"config": self.config}
            if self._tokens is not None:
                kwargs["token_provider"] = self._tokens
            writer = SegmentWriter(self._pool, self._controller, segment.name, **kwargs)
            self._writers[segment.segment_id] = writer
        return writer

    def _writer_at(self, index: int) -> SegmentWriter:
        writer = self._by_index[index] = self.writer_for(self.segments[index])
        return writer

    def write_nowait(self, event: Any, routing_key: Optional[str] = None) -> SegmentWithRange:
        """Write without waiting; returns the segment the event went to."""
        index = bisect_left(self._max_keys,
                            _random() if routing_key is None else _hash(routing_key))
        if index > self._last:
            index = self._last
        writer = self._by_index[index] or self._writer_at(index)
        writer.write_nowait(event)
        return self.segments[index]

    async def write(self, event: Any, routing_key: Optional[str] = None) -> SegmentWithRange:
        """Write, waiting only while the segment writer's in-flight bytes are over its limit;
        returns the segment the event went to."""
        index = bisect_left(self._max_keys,
                            _random() if routing_key is None else _hash(routing_key))
        if index > self._last:
            index = self._last
        writer = self._by_index[index] or self._writer_at(index)
        if writer._inflight_bytes > self.config.max_inflight_bytes:
            await writer.write(event)  # waits for room
        else:
            writer.write_nowait(event)
        return self.segments[index]

    @property
    def writers(self) -> List[SegmentWriter]:
        return list(self._writers.values())

    async def flush(self, *, timeout: Optional[float] = None) -> None:
        """Flush every segment writer; the first error is raised once all have finished."""
        results = await asyncio.gather(*(w.flush(timeout=timeout)
                                         for w in self._writers.values()),
                                       return_exceptions=True)
        _raise_first(results)

    async def close(self) -> None:
        """Flush and close every segment writer (all of them, even if one fails; the first
        error is raised)."""
        results = await asyncio.gather(*(w.close() for w in self._writers.values()),
                                       return_exceptions=True)
        _raise_first(results)

    async def __aenter__(self) -> "StreamWriter":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            for writer in self._writers.values():
                await writer.close(flush=False)


_hash = hash_routing_key
_random = random.random


def _raise_first(results: List[Any]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def stream_readers(pool: Any, controller: Any, scope: str, stream: str, *,
                         auth: bool = False, **kwargs: Any) -> List[SegmentReader]:
    """One :class:`SegmentReader` per segment at the head of the stream, from its head offset
    (``kwargs`` go to every reader). With ``auth``, the readers share one cached token provider
    over ``controller.get_delegation_token`` (then pass no ``token_provider``)."""
    if auth:
        if "token_provider" in kwargs:
            raise TypeError("pass auth=True or a token_provider, not both")
        kwargs["token_provider"] = _token_provider(controller, scope, stream)
    head = await controller.get_segments_at_head(scope, stream)
    return [SegmentReader(pool, controller, location.name, offset=location.offset, **kwargs)
            for location in head]

"""Reader groups: readers in any number of processes share a stream's segments, follow the
stream through its scales, and take checkpoints.

Where the group's state lives. As the Rust client does, in a *table segment* of the cluster,
``<scope>/_RGstate<group>/0.#epoch.0`` (:func:`state_segment_name`), one key (``state``) whose
value is the whole state as JSON and whose key version makes every change a compare-and-set:
a reader reads the state, changes its copy and writes it back conditionally on the version it
read (``UpdateTableEntries`` with that key version; the store answers ``TableKeyBadVersion`` if
another process wrote first, and the change is made again on the fresh state). One value rather
than one key per reader keeps every change atomic without multi-key batches, and a table
segment (rather than Java's state segment with conditional appends, replayed from its start)
needs no compaction: the store keeps only the latest value. The state holds

- ``readers``: each online reader, the segments it owns with the offset it last checkpointed
  (or acquired them at), and when it was last seen (wall-clock seconds);
- ``unassigned``: segments nobody owns, with the offset to read them from;
- ``future``: successors of completed segments that wait for their other predecessors (a
  successor is read only once every predecessor has been read to its end, so events with one
  routing key keep their order across scales);
- ``completed``: segments read to their end (with their length), ``end``: the end stream cut
  (segment -> offset; reading stops there);
- ``checkpoints``: checkpoints in progress (readers still to pass them, positions so far) and
  the last few completed ones.

Balance. At most every ``group_refresh_time`` a reader refreshes the state (and marks itself
seen). With ``n`` readers and ``t`` segments in play, a reader owning more than ``ceil(t/n)``
segments, or two more than the reader owning fewest, releases one at the position of the last
event it returned; a reader owning fewer than ``ceil(t/n)`` takes unassigned ones. Nothing moves
while a checkpoint is in progress (so a checkpoint's positions are consistent).

A reader that stops without :meth:`EventStreamReader.close` is declared offline by
:meth:`ReaderGroup.reader_offline`, or by any other reader once it has not been seen for
``liveness_timeout``: its segments go back to the group at the positions of its last checkpoint
(events after it are read again: at least once). A reader that closes goes offline at the
position of the last event it returned (nothing is read twice).

::

    async with ReaderGroupManager("sc", controller) as groups:
        await groups.create_reader_group("g", ReaderGroupConfig(["sc/orders"]))
        group = await groups.get_reader_group("g")
        async with await group.create_reader("reader-1") as reader:
            read = await reader.read_next_event(timeout=1.0)
            if read.event is not None:
                handle(read.event)

Auth. Every segment request (the state table segment, the segment readers, info requests)
carries a delegation token from ``controller.get_delegation_token``, one cached per stream
for the manager, its groups and their readers
(:func:`~pravega_wire.client.stream.segment_token_provider`).
The state's token is asked for its own stream, ``_RGstate<group>``: the embedded controller
grants a token for any stream name. Pravega's controller maps an ``_RG<name>`` stream to the
reader-group resource ``<name>`` (Java's ``StreamAuthParams``), so against it the state's
token is checked against a group named ``state<group>``.

Java's ``ReaderGroupManager``, ``ReaderGroup``, ``EventStreamReader`` and
``ReaderGroupState`` are the model; docs/controller.md describes the controller's RPCs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import commands as C
from ..errors import PravegaWireError, SegmentTruncatedError
from ..errors import TimeoutError as _ReadTimeout
from ..pool import ClientConfig, ConnectionPool
from .controller import (
    ControllerClient, ReaderGroupRecord, StreamCut, parse_segment_name, segment_name,
)
from .manager import controller_client
from .raw import MetadataClient, _SegmentClientBase
from .reader import EndOfSegment, SegmentReader
from .stream import segment_token_provider

__all__ = ["ReaderGroupManager", "ReaderGroup", "ReaderGroupConfig", "EventStreamReader",
           "EventRead", "Position", "Checkpoint", "ReaderGroupError", "ReaderOfflineError",
           "CheckpointError", "state_segment_name"]

#: The key of the group's state in its table segment.
STATE_KEY = b"state"
#: Version of the state's JSON layout.
STATE_FORMAT = 1
#: Completed checkpoints the state keeps (the oldest are forgotten).
KEPT_CHECKPOINTS = 10
_TIMEOUTS = (asyncio.TimeoutError, _ReadTimeout)
#: Seconds between looks at the state while :meth:`ReaderGroup.initiate_checkpoint` waits.
CHECKPOINT_POLL = 0.05


class ReaderGroupError(PravegaWireError):
    """A reader-group operation that the group's state refuses."""


class ReaderOfflineError(ReaderGroupError):
    """The reader is not (or no longer) in the group: it was declared offline."""


class CheckpointError(ReaderGroupError):
    """A checkpoint could not be started (too many in progress, or a duplicate name) or did
    not complete in time."""


def state_segment_name(scope: str, group: str) -> str:
    """The table segment that holds reader group ``group``'s state."""
    return segment_name(scope, f"_RGstate{group}", 0)



def _cuts(positions: Mapping[str, int]) -> dict[str, StreamCut]:
    """Segment name -> offset, as one StreamCut per stream (``scope/stream`` -> cut)."""
    per_stream: dict[str, dict[int, int]] = {}
    for segment, offset in positions.items():
        scope, stream, segment_id = parse_segment_name(segment)
        per_stream.setdefault(f"{scope}/{stream}", {})[segment_id] = offset
    out = {}
    for key, cut in per_stream.items():
        scope, stream = key.split("/", 1)
        out[key] = StreamCut(scope, stream, cut)
    return out


@dataclasses.dataclass(frozen=True)
class ReaderGroupConfig:
    """What a reader group reads and how it coordinates (Java's ``ReaderGroupConfig``).

    ``streams``: each a ``"scope/stream"`` (read from its head) or a :class:`StreamCut` (read
    from there). ``end``: StreamCuts where reading stops (a stream without one is read for as
    long as it is written). ``automatic_checkpoint_interval``: seconds between checkpoints the
    readers start themselves (None: none). ``group_refresh_time``: seconds between a reader's
    looks at the group's state (balance, liveness). ``max_outstanding_checkpoints``: checkpoints
    that may be in progress at once. ``liveness_timeout``: seconds after which a reader not seen
    is declared offline by the others.
    """

    streams: Sequence[str | StreamCut]
    end: Sequence[StreamCut] = ()
    automatic_checkpoint_interval: float | None = None
    group_refresh_time: float = 3.0
    max_outstanding_checkpoints: int = 3
    liveness_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("a reader group reads at least one stream")
        for stream in self.streams:
            if not isinstance(stream, (str, StreamCut)) or (
                    isinstance(stream, str) and stream.count("/") != 1):
                raise ValueError(f"not a 'scope/stream' or StreamCut: {stream!r}")
        if self.group_refresh_time <= 0 or self.liveness_timeout <= 0:
            raise ValueError("group_refresh_time and liveness_timeout must be positive")
        if self.max_outstanding_checkpoints < 1:
            raise ValueError("max_outstanding_checkpoints must be at least 1")
        interval = self.automatic_checkpoint_interval
        if interval is not None and interval <= 0:
            raise ValueError("automatic_checkpoint_interval must be positive or None")

    def stream_names(self) -> list[str]:
        return [s if isinstance(s, str) else f"{s.scope}/{s.stream}" for s in self.streams]

    def to_record(self, scope: str, group: str, **identity: Any) -> ReaderGroupRecord:
        """The controller's record of this configuration (``readerGroupId``, ``generation``
        in ``identity``); a stream read from its head has an empty start cut."""
        def start(s: str | StreamCut) -> StreamCut:
            if isinstance(s, StreamCut):
                return s
            stream_scope, stream = s.split("/", 1)
            return StreamCut(stream_scope, stream, {})
        interval = self.automatic_checkpoint_interval
        return ReaderGroupRecord(
            scope, group, group_refresh_time_ms=round(self.group_refresh_time * 1000),
            automatic_checkpoint_interval_ms=-1 if interval is None else round(interval * 1000),
            max_outstanding_checkpoints=self.max_outstanding_checkpoints,
            start=tuple(start(s) for s in self.streams), end=tuple(self.end), **identity)

    def to_json(self) -> dict[str, Any]:
        def cut(c: StreamCut) -> dict[str, Any]:
            return {"scope": c.scope, "stream": c.stream,
                    "positions": {str(k): v for k, v in c.positions.items()}}
        return {"streams": [s if isinstance(s, str) else cut(s) for s in self.streams],
                "end": [cut(c) for c in self.end],
                "automatic_checkpoint_interval": self.automatic_checkpoint_interval,
                "group_refresh_time": self.group_refresh_time,
                "max_outstanding_checkpoints": self.max_outstanding_checkpoints,
                "liveness_timeout": self.liveness_timeout}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReaderGroupConfig:
        def cut(c: Mapping[str, Any]) -> StreamCut:
            return StreamCut(c["scope"], c["stream"],
                             {int(k): v for k, v in c["positions"].items()})
        return cls(streams=tuple(s if isinstance(s, str) else cut(s) for s in data["streams"]),
                   end=tuple(cut(c) for c in data["end"]),
                   automatic_checkpoint_interval=data["automatic_checkpoint_interval"],
                   group_refresh_time=data["group_refresh_time"],
                   max_outstanding_checkpoints=data["max_outstanding_checkpoints"],
                   liveness_timeout=data["liveness_timeout"])


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a reader is: for each segment it owns, the offset after the last event it
    returned (pass it to :meth:`ReaderGroup.reader_offline`)."""

    segments: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class EventRead:
    """What :meth:`EventStreamReader.read_next_event` returns: an event (``event``, from
    ``segment`` at ``offset``), a checkpoint marker (``checkpoint_name``, no event), or
    nothing within the timeout (``event`` None). ``position`` is the reader's position after
    it."""

    event: bytes | memoryview | None
    position: Position
    segment: str | None = None
    offset: int = -1
    checkpoint_name: str | None = None

    @property
    def is_checkpoint(self) -> bool:
        return self.checkpoint_name is not None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A completed checkpoint: its name and a StreamCut per stream (``scope/stream`` -> cut)."""

    name: str
    stream_cuts: Mapping[str, StreamCut]


# ---- the state table -------------------------------------------------------------------------

class _StateTable(_SegmentClientBase):
    """One key of a table segment, read and written conditionally on its version."""

    async def create(self, segment: str) -> bool:
        reply = await self._call(segment, C.CreateTableSegment,
                                 (C.SegmentCreated, C.SegmentAlreadyExists), segment=segment)
        return type(reply) is C.SegmentCreated

    async def delete(self, segment: str) -> bool:
        reply = await self._call(segment, C.DeleteTableSegment,
                                 (C.SegmentDeleted, C.NoSuchSegment), segment=segment,
                                 must_be_empty=False)
        return type(reply) is C.SegmentDeleted

    async def get(self, segment: str, key: bytes) -> tuple[int, bytes | None]:
        """``(version, value)``; ``(NOT_EXISTS, None)`` for a missing key or segment."""
        reply = await self._call(segment, C.ReadTable, (C.TableRead, C.NoSuchSegment),
                                 segment=segment, keys=[C.TableKey(key, C.TableKey.NO_VERSION)])
        if type(reply) is C.NoSuchSegment:
            return C.TableKey.NOT_EXISTS, None
        table_key, value = reply.entries.entries[0]
        if table_key.key_version == C.TableKey.NOT_EXISTS:
            return C.TableKey.NOT_EXISTS, None
        return table_key.key_version, bytes(value.data)

    async def put(self, segment: str, key: bytes, value: bytes, version: int) -> int | None:
        """Write ``value`` if the key's version is ``version`` (NOT_EXISTS: if it is missing):
        the new version, or None if the key has another version now."""
        entries = C.TableEntries([(C.TableKey(key, version), C.TableValue(value))])
        reply = await self._call(segment, C.UpdateTableEntries,
                                 (C.TableEntriesUpdated, C.TableKeyBadVersion,
                                  C.TableKeyDoesNotExist), segment=segment,
                                 table_entries=entries)
        if type(reply) is not C.TableEntriesUpdated:
            return None
        return reply.updated_versions[0]


class _Synchronizer:
    """The group's state: a cached copy and conditional updates (Java's
    ``StateSynchronizer.updateState``)."""

    def __init__(self, table: _StateTable, segment: str):
        self._table = table
        self.segment = segment
        self._version = C.TableKey.NOT_EXISTS
        self._raw: bytes | None = None

    async def fetch(self) -> dict[str, Any]:
        self._version, self._raw = await self._table.get(self.segment, STATE_KEY)
        if self._raw is None:
            raise ReaderGroupError(f"reader group state {self.segment} is missing (deleted?)")
        return json.loads(self._raw)

    async def update(self, change: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Apply ``change`` (which edits the state in place and returns whether it changed
        anything) to the latest state and write it conditionally, again on a conflict. The
        cached copy is tried first (a conflict tells if it is stale); "no change" counts only
        on a copy fetched by this call."""
        fresh = self._raw is None
        if fresh:
            await self.fetch()
        while True:
            assert self._raw is not None
            state = json.loads(self._raw)
            if not change(state):
                if fresh:
                    return state
                await self.fetch()
                fresh = True
                continue
            raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
            version = await self._table.put(self.segment, STATE_KEY, raw, self._version)
            if version is not None:
                self._version, self._raw = version, raw
                return state
            await self.fetch()
            fresh = True


# ---- the state's rules (pure functions of the JSON state) --------------------------------------

def _initial_state(config: ReaderGroupConfig, start: Mapping[str, int],
                   before: Mapping[str, int], end: Mapping[str, int],
                   generation: int = 0) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "config": config.to_json(), "generation": generation,
            "readers": {}, "unassigned": dict(start), "future": {}, "completed": dict(before),
            "end": dict(end), "checkpoints": [], "done_checkpoints": [],
            "last_checkpoint_time": time.time()}


def _offline(state: dict[str, Any], reader: str,
             position: Mapping[str, int] | None = None) -> bool:
    """Remove ``reader``; its segments go back at ``position`` (or its last checkpoint)."""
    info = state["readers"].pop(reader, None)
    if info is None:
        return False
    owned = dict(info["segments"])
    if position is not None:
        owned.update({s: o for s, o in position.items() if s in owned})
    state["unassigned"].update(owned)
    for checkpoint in state["checkpoints"]:
        if reader in checkpoint["pending"]:
            checkpoint["pending"].remove(reader)
            checkpoint["positions"].update(owned)
    _finish_checkpoints(state)
    return True


def _finish_checkpoints(state: dict[str, Any]) -> None:
    """Move checkpoints no reader is pending for to the completed ones (in order)."""
    while state["checkpoints"] and not state["checkpoints"][0]["pending"]:
        done = state["checkpoints"].pop(0)
        state["done_checkpoints"].append({"name": done["name"], "positions": done["positions"]})
        del state["done_checkpoints"][:-KEPT_CHECKPOINTS]


def _completed_positions(state: dict[str, Any]) -> dict[str, int]:
    """Completed segments whose range is not yet read further (predecessors of a successor
    still waiting), at their ends: a stream cut must cover their key range."""
    out = {}
    for waiting in state["future"].values():
        for predecessor in waiting["done"]:
            if predecessor in state["completed"]:
                out[predecessor] = state["completed"][predecessor]
    return out


def _positions(state: dict[str, Any]) -> dict[str, int]:
    """The group's position as last recorded: readers' checkpointed offsets, unassigned
    segments, completed ones waiting for a successor's other predecessors."""
    out = dict(state["unassigned"])
    for info in state["readers"].values():
        out.update(info["segments"])
    out.update(_completed_positions(state))
    return out


def _add_checkpoint(state: dict[str, Any], name: str) -> None:
    config = state["config"]
    if len(state["checkpoints"]) >= config["max_outstanding_checkpoints"]:
        raise CheckpointError(f"{len(state['checkpoints'])} checkpoints in progress "
                              f"(max_outstanding_checkpoints)")
    names = {c["name"] for c in state["checkpoints"]} | {
        c["name"] for c in state["done_checkpoints"]}
    if name in names:
        raise CheckpointError(f"checkpoint {name!r} exists already")
    positions = dict(state["unassigned"])
    positions.update(_completed_positions(state))
    state["checkpoints"].append({"name": name, "pending": sorted(state["readers"]),
                                 "positions": positions})
    state["last_checkpoint_time"] = time.time()
    _finish_checkpoints(state)


# ---- the manager and the group ---------------------------------------------------------------

class ReaderGroupManager:
    """Creates, opens and deletes the reader groups of ``scope`` (Java's
    ``ReaderGroupManager``). ``controller`` is a URI (with ControllerClient ``options``) or a
    :class:`ControllerClient` that stays the caller's; ``pool`` carries the segment traffic (by
    default the manager opens its own). Use ``async with`` or :meth:`close`."""

    def __init__(self, scope: str, controller: str | ControllerClient, *,
                 pool: ConnectionPool | None = None, **options: Any):
        self.scope = scope
        self.controller, self._owns_controller = controller_client(controller, options)
        self._owns_pool = pool is None
        self.pool = pool if pool is not None else ConnectionPool(ClientConfig())
        #: The delegation tokens of every segment request of the manager, its groups and
        #: their readers (one cached token per stream, the state's ``_RGstate<group>`` too).
        self.tokens = segment_token_provider(self.controller)
        self._groups: list[ReaderGroup] = []

    async def __aenter__(self) -> ReaderGroupManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the groups opened here (their readers stay the caller's), the pool and the
        controller channel if the manager opened them."""
        groups, self._groups = self._groups, []
        for group in groups:
            await group.close()
        if self._owns_pool:
            await self.pool.close()
        if self._owns_controller:
            await self.controller.close()

    async def create_reader_group(self, group: str, config: ReaderGroupConfig) -> bool:
        """Create the group reading ``config``'s streams from their start cuts (True), or
        leave an existing group as it is (False). The controller records it first
        (``createReaderGroup``: ScopeNotFoundError, InvalidNameError), then its state is
        created."""
        await self.controller.create_reader_group(config.to_record(self.scope, group))
        table = _StateTable(self.pool, self.controller, token_provider=self.tokens)
        try:
            segment = state_segment_name(self.scope, group)
            await table.create(segment)
            state = await _start_state(self.controller, config)
            raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
            return await table.put(segment, STATE_KEY, raw, C.TableKey.NOT_EXISTS) is not None
        finally:
            await table.close()

    async def get_reader_group(self, group: str) -> ReaderGroup:
        """The existing group ``group`` (ReaderGroupError if it does not exist)."""
        opened = ReaderGroup(self, group)
        try:
            await opened._sync.fetch()
        except BaseException:
            await opened.close()
            raise
        self._groups.append(opened)
        return opened

    async def delete_reader_group(self, group: str) -> bool:
        """Delete the group from the controller and its state (its readers fail at their
        next refresh): True if it existed."""
        recorded = await self.controller.delete_reader_group(self.scope, group)
        table = _StateTable(self.pool, self.controller, token_provider=self.tokens)
        try:
            return await table.delete(state_segment_name(self.scope, group)) or recorded
        finally:
            await table.close()


async def _start_state(controller: ControllerClient, config: ReaderGroupConfig,
                       generation: int = 0) -> dict[str, Any]:
    """The state of a group that starts at ``config``'s start cuts (the heads without)."""
    start: dict[str, int] = {}
    before: dict[str, int] = {}
    for stream in config.streams:
        if isinstance(stream, str):
            scope, name = stream.split("/", 1)
            head = await controller.get_segments_at_head(scope, name)
            cut = {h.segment_id: h.offset for h in head}
        else:
            scope, name, cut = stream.scope, stream.stream, dict(stream.positions)
        start.update({segment_name(scope, name, i): o for i, o in cut.items()})
        # Segments before the start cut count as read: successors do not wait for them.
        for segment_id in await controller.get_segments_between(scope, name, None, cut):
            if segment_id not in cut:
                before[segment_name(scope, name, segment_id)] = 0
    end = {segment_name(c.scope, c.stream, i): o for c in config.end
           for i, o in c.positions.items()}
    return _initial_state(config, start, before, end, generation)


class ReaderGroup:
    """A reader group (Java's ``ReaderGroup``): its readers, checkpoints, stream cuts and
    reset. Opened by :meth:`ReaderGroupManager.get_reader_group`."""

    def __init__(self, manager: ReaderGroupManager, group: str):
        self.scope = manager.scope
        self.name = group
        self.controller = manager.controller
        self.pool = manager.pool
        self.tokens = manager.tokens
        self._table = _StateTable(self.pool, self.controller, token_provider=self.tokens)
        self._sync = _Synchronizer(self._table, state_segment_name(self.scope, group))
        self._metadata: MetadataClient | None = None

    async def close(self) -> None:
        await self._table.close()
        if self._metadata is not None:
            await self._metadata.close()

    async def state(self) -> dict[str, Any]:
        """The group's state as stored now (a copy; its layout is described above)."""
        return await self._sync.fetch()

    async def config(self) -> ReaderGroupConfig:
        return ReaderGroupConfig.from_json((await self.state())["config"])

    async def create_reader(self, reader_id: str) -> EventStreamReader:
        """Add reader ``reader_id`` (ReaderGroupError if one of that id is online) and
        return it. It owns its own state connection; close it with :meth:`EventStreamReader.
        close` or ``async with``."""
        reader = EventStreamReader(self, reader_id)
        try:
            await reader._join()
        except BaseException:
            await reader._release_all()
            raise
        return reader

    async def online_readers(self) -> list[str]:
        return sorted((await self.state())["readers"])

    async def reader_offline(self, reader_id: str, last_position: Position | None = None
                             ) -> bool:
        """Declare ``reader_id`` offline: its segments go back to the group at
        ``last_position`` (None: its last checkpoint). False if it was not online."""
        position = None if last_position is None else last_position.segments
        removed = False

        def change(state: dict[str, Any]) -> bool:
            nonlocal removed
            removed = _offline(state, reader_id, position)
            return removed

        await self._sync.update(change)
        return removed

    async def initiate_checkpoint(self, name: str, *, timeout: float = 30.0) -> Checkpoint:
        """Start checkpoint ``name`` and wait (at most ``timeout`` seconds) until every online
        reader has passed it (each returns it from ``read_next_event`` once, and records its
        position at its next call). Raises CheckpointError when too many are in progress,
        the name is taken, or it does not complete in time."""

        def change(state: dict[str, Any]) -> bool:
            _add_checkpoint(state, name)
            return True

        await self._sync.update(change)
        deadline = time.monotonic() + timeout
        while True:
            state = await self._sync.fetch()
            for done in state["done_checkpoints"]:
                if done["name"] == name:
                    return Checkpoint(name, _cuts(done["positions"]))
            if not any(c["name"] == name for c in state["checkpoints"]):
                raise CheckpointError(f"checkpoint {name!r} was dropped (the group was reset?)")
            if time.monotonic() >= deadline:
                raise CheckpointError(f"checkpoint {name!r} did not complete in {timeout} s")
            await asyncio.sleep(CHECKPOINT_POLL)  # polling the cluster's state, as Java does

    async def generate_stream_cuts(self) -> dict[str, StreamCut]:
        """A StreamCut per stream at the group's recorded positions (readers' last
        checkpoints, unassigned segments)."""
        return _cuts(_positions(await self.state()))

    async def unread_bytes(self) -> int:
        """Bytes from the group's recorded positions to the current ends of those segments and
        of the successors waiting to be read (segments not yet created are not counted)."""
        state = await self.state()
        if self._metadata is None:
            self._metadata = MetadataClient(self.pool, self.controller,
                                            token_provider=self.tokens)
        total = 0
        for segment, offset in _positions(state).items():
            info = await self._metadata.get_info(segment)
            total += max(0, state["end"].get(segment, info.length) - offset)
        for segment in state["future"]:
            info = await self._metadata.get_info(segment)
            total += state["end"].get(segment, info.length)
        return total

    async def reset_reader_group(self, config: ReaderGroupConfig | None = None) -> None:
        """Start the group again from ``config``'s start cuts (the current config's when
        None); online readers drop their segments at their next call and share the new ones.
        Checkpoints in progress are dropped."""
        current = await self.state()
        config = config or ReaderGroupConfig.from_json(current["config"])
        fresh = await _start_state(self.controller, config)
        record = await self.controller.get_reader_group_config(self.scope, self.name)
        if record is not None:  # the controller's record follows (a new generation)
            await self.controller.update_reader_group(config.to_record(
                self.scope, self.name, reader_group_id=record.reader_group_id,
                generation=record.generation))

        def change(state: dict[str, Any]) -> bool:
            readers = {r: {"segments": {}, "seen": info["seen"]}
                       for r, info in state["readers"].items()}
            done = state["done_checkpoints"]
            state.clear()
            state.update(json.loads(json.dumps(fresh)))
            state["generation"] = current["generation"] + 1
            state["readers"] = readers
            state["done_checkpoints"] = done
            return True

        await self._sync.update(change)

    async def reset_to_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Reset the group to read from ``checkpoint``'s stream cuts (end cuts kept)."""
        config = await self.config()
        await self.reset_reader_group(dataclasses.replace(
            config, streams=tuple(checkpoint.stream_cuts.values())))


# ---- the reader --------------------------------------------------------------------------------

class _Owned:
    """A segment the reader owns: its SegmentReader, the offset after the last event
    returned, the read in progress."""

    __slots__ = ("reader", "delivered", "task", "start")

    def __init__(self, reader: SegmentReader, offset: int):
        self.reader = reader
        self.delivered = offset
        self.start = offset  # offset of the event the task reads
        self.task: asyncio.Future | None = None


class EventStreamReader:
    """One reader of a group (Java's ``EventStreamReader``): :meth:`read_next_event` returns
    the events of the segments it owns, acquiring and releasing segments to keep the group
    balanced, following successors after scales, and returning checkpoint markers. One
    coroutine reads at a time. :meth:`close` goes offline at the last event's position."""

    def __init__(self, group: ReaderGroup, reader_id: str):
        self.group = group
        self.reader_id = reader_id
        self._table = _StateTable(group.pool, group.controller, token_provider=group.tokens)
        self._sync = _Synchronizer(self._table, group._sync.segment)
        self._owned: dict[str, _Owned] = {}
        self._generation = -1
        self._next_refresh = 0.0
        self._refresh_time = 3.0
        self._config: dict[str, Any] = {}
        self._checkpoint: str | None = None  # marker to return
        self._to_ack: str | None = None  # checkpoint returned, position to record next call
        self._closed = False
        self._rotation = 0
        #: Segments acquired and released so far (for tests and metrics).
        self.acquired = 0
        self.released = 0

    async def __aenter__(self) -> EventStreamReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def segments(self) -> list[str]:
        """The segments this reader owns now."""
        return sorted(self._owned)

    def position(self) -> Position:
        return Position({name: owned.delivered for name, owned in self._owned.items()})

    async def _join(self) -> None:
        def change(state: dict[str, Any]) -> bool:
            if self.reader_id in state["readers"]:
                raise ReaderGroupError(f"reader {self.reader_id!r} is online in group "
                                       f"{self.group.name!r} already")
            state["readers"][self.reader_id] = {"segments": {}, "seen": time.time()}
            return True

        state = await self._sync.update(change)
        self._generation = state["generation"]
        self._config = state["config"]
        self._refresh_time = self._config["group_refresh_time"]

    # ---- reading ---------------------------------------------------------------------------

    async def read_next_event(self, timeout: float | None = None) -> EventRead:
        """The next event of a segment this reader owns (each segment's events in order), a
        checkpoint marker, or, when none comes within ``timeout`` seconds (None: wait), an
        EventRead whose ``event`` is None. Raises ReaderOfflineError once the reader was
        declared offline."""
        if self._closed:
            raise ReaderOfflineError(f"reader {self.reader_id!r} is closed")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._to_ack is not None:
            await self._ack_checkpoint(self._to_ack)
        while True:
            now = loop.time()
            if now >= self._next_refresh:
                await self._refresh()
                self._next_refresh = loop.time() + self._refresh_time
            if self._checkpoint is not None:
                name, self._checkpoint = self._checkpoint, None
                self._to_ack = name
                return EventRead(None, self.position(), checkpoint_name=name)
            outcome = await self._buffered_event()
            if outcome is None:
                tasks = {}
                for name, owned in self._owned.items():
                    if owned.task is None:
                        owned.start = owned.reader.offset
                        owned.task = asyncio.ensure_future(owned.reader.read_event())
                    tasks[owned.task] = name
                wait = self._next_refresh - loop.time()
                if deadline is not None:
                    if deadline <= loop.time():
                        return EventRead(None, self.position())
                    wait = min(wait, deadline - loop.time())
                if not tasks:
                    await asyncio.sleep(max(0.0, wait))  # nothing owned: wait for the next look
                    continue
                done, _ = await asyncio.wait(tasks, timeout=max(0.0, wait),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    continue
                # Take the finished reads in turn, so no segment starves another.
                names = sorted(tasks[t] for t in done)
                name = names[self._rotation % len(names)]
                self._rotation += 1
                task, self._owned[name].task = self._owned[name].task, None
                assert task is not None
                error = task.exception()
                outcome = (name, None if error else task.result(), error)
            name, event, error = outcome
            if isinstance(error, EndOfSegment):
                await self._complete(name)
                self._next_refresh = 0.0  # take successors (or other segments) at once
                continue
            if isinstance(error, SegmentTruncatedError):
                await self._reopen(name, error.start_offset)
                continue
            if error is not None:
                raise error
            owned = self._owned[name]
            owned.delivered = owned.reader.offset
            return EventRead(event, self.position(), name, owned.start)

    async def _buffered_event(self) -> tuple[str, Any, BaseException | None] | None:
        """``(segment, event, error)`` from a segment whose reader has a whole event (or its
        end) at hand without waiting, taking the segments in turn; None if none has."""
        owned_items = list(self._owned.items())
        count = len(owned_items)
        for i in range(count):
            name, owned = owned_items[(self._rotation + i) % count]
            if owned.task is not None or owned.reader.buffered < 8:
                continue
            owned.start = owned.reader.offset
            try:
                event = await owned.reader.read_event(timeout=0)
            except _TIMEOUTS:
                continue  # only part of the event is there: the reader goes on fetching
            except Exception as error:  # noqa: BLE001 (handled as a finished read's)
                return name, None, error
            self._rotation += 1
            return name, event, None
        return None

    # ---- the state -------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Mark this reader seen, declare readers not seen for the liveness timeout offline,
        take up a reset or a checkpoint, and release or acquire segments for balance."""
        acquired: dict[str, int] = {}
        released: list[str] = []
        checkpoint: list[str] = []
        reset = False

        def change(state: dict[str, Any]) -> bool:
            nonlocal reset
            acquired.clear()
            released.clear()
            checkpoint.clear()
            me = state["readers"].get(self.reader_id)
            if me is None:
                raise ReaderOfflineError(f"reader {self.reader_id!r} was declared offline")
            reset = state["generation"] != self._generation
            config = state["config"]
            now = time.time()
            me["seen"] = now
            if reset:
                me["segments"] = {}
            for other, info in list(state["readers"].items()):
                if other != self.reader_id and now - info["seen"] > config["liveness_timeout"]:
                    _offline(state, other)
            interval = config["automatic_checkpoint_interval"]
            if (interval is not None and not state["checkpoints"]
                    and now - state["last_checkpoint_time"] >= interval):
                _add_checkpoint(state, f"auto-{self.reader_id}-{now:.3f}")
            for pending in state["checkpoints"]:
                if self.reader_id in pending["pending"]:
                    checkpoint.append(pending["name"])
                    break
            if not state["checkpoints"]:
                self._balance(state, me, acquired, released)
            return True

        state = await self._sync.update(change)
        self._config = state["config"]
        self._refresh_time = self._config["group_refresh_time"]
        if reset:
            self._generation = state["generation"]
            self._checkpoint = self._to_ack = None
            for name in list(self._owned):
                await self._drop(name)
        for name in released:
            await self._drop(name)
            self.released += 1
        for name, offset in acquired.items():
            self._open(name, offset, state["end"].get(name))
            self.acquired += 1
        if checkpoint and self._to_ack is None:
            self._checkpoint = checkpoint[0]

    def _balance(self, state: dict[str, Any], me: dict[str, Any],
                 acquired: dict[str, int], released: list[str]) -> None:
        readers = state["readers"]
        counts = [len(info["segments"]) for info in readers.values()]
        total = sum(counts) + len(state["unassigned"])
        fair = -(-total // len(readers))
        mine = len(me["segments"])
        if mine > fair or (mine >= min(counts) + 2):
            name = sorted(me["segments"])[-1]
            owned = self._owned.get(name)
            offset = owned.delivered if owned is not None else me["segments"][name]
            del me["segments"][name]
            state["unassigned"][name] = offset
            released.append(name)
            return
        for name in sorted(state["unassigned"])[:max(0, fair - mine)]:
            offset = state["unassigned"].pop(name)
            me["segments"][name] = offset
            acquired[name] = offset

    async def _complete(self, name: str) -> None:
        """Segment ``name`` was read to its end: drop it and queue its successors (unless the
        end stream cut stops there)."""
        owned = self._owned[name]
        end_offset = owned.reader.offset
        scope, stream, segment_id = parse_segment_name(name)
        state = await self._sync.fetch()
        successors = [] if name in state["end"] else await self.group.controller.get_successors(
            scope, stream, segment_id)

        def change(state: dict[str, Any]) -> bool:
            me = state["readers"].get(self.reader_id)
            if me is None:
                raise ReaderOfflineError(f"reader {self.reader_id!r} was declared offline")
            if me["segments"].pop(name, None) is None:
                return False  # released meanwhile (a reset)
            state["completed"][name] = end_offset
            for checkpoint in state["checkpoints"]:
                if self.reader_id in checkpoint["pending"]:
                    checkpoint["positions"][name] = end_offset
            for successor in successors:
                successor_name = successor.segment.name
                if successor_name in state["future"]:
                    waiting = state["future"][successor_name]
                elif successor_name in state["unassigned"] or successor_name in state[
                        "completed"] or any(successor_name in r["segments"]
                                            for r in state["readers"].values()):
                    continue
                else:
                    waiting = {"pending": sorted(
                        p for p in (segment_name(scope, stream, i)
                                    for i in successor.predecessors)
                        if p not in state["completed"]), "done": []}
                    state["future"][successor_name] = waiting
                if name in waiting["pending"]:
                    waiting["pending"].remove(name)
                if name not in waiting["done"]:
                    waiting["done"].append(name)
                if not waiting["pending"]:
                    del state["future"][successor_name]
                    state["unassigned"][successor_name] = 0
            self._prune_completed(state)
            return True

        await self._sync.update(change)
        await self._drop(name)

    @staticmethod
    def _prune_completed(state: dict[str, Any]) -> None:
        """Completed segments are kept while a waiting successor names them; the others only
        matter to successors created later, which name a completed predecessor only if it
        was read in this group: keep the most recent ones."""
        waiting = {p for w in state["future"].values() for p in w["done"]}
        completed = state["completed"]
        if len(completed) > 4096:
            for name in list(completed)[:len(completed) - 4096]:
                if name not in waiting:
                    del completed[name]

    async def _ack_checkpoint(self, name: str) -> None:
        """Record this reader's position for checkpoint ``name`` (the application has had
        every event before the marker): also its last checkpointed position."""
        position = {n: o.delivered for n, o in self._owned.items()}

        def change(state: dict[str, Any]) -> bool:
            me = state["readers"].get(self.reader_id)
            if me is None:
                raise ReaderOfflineError(f"reader {self.reader_id!r} was declared offline")
            for checkpoint in state["checkpoints"]:
                if checkpoint["name"] == name and self.reader_id in checkpoint["pending"]:
                    checkpoint["pending"].remove(self.reader_id)
                    checkpoint["positions"].update(position)
                    me["segments"].update({n: o for n, o in position.items()
                                           if n in me["segments"]})
                    _finish_checkpoints(state)
                    return True
            return False

        self._to_ack = None
        await self._sync.update(change)

    # ---- segment readers -------------------------------------------------------------------

    def _open(self, name: str, offset: int, end: int | None) -> None:
        group = self.group
        self._owned[name] = _Owned(SegmentReader(group.pool, group.controller, name,
                                                 offset=offset, end_offset=end,
                                                 token_provider=group.tokens), offset)

    async def _reopen(self, name: str, offset: int) -> None:
        """The segment was truncated before the reader's offset: go on from its start."""
        owned = self._owned[name]
        end = owned.reader.end_offset
        await self._drop(name)
        self._open(name, max(offset, owned.delivered), end)

    async def _drop(self, name: str) -> None:
        owned = self._owned.pop(name, None)
        if owned is None:
            return
        await owned.reader.close()
        if owned.task is not None:
            await asyncio.gather(owned.task, return_exceptions=True)

    async def _release_all(self) -> None:
        for name in list(self._owned):
            await self._drop(name)
        await self._table.close()

    async def close(self) -> None:
        """Go offline at the position of the last event returned (the segments go back to the
        group there) and release the reader's connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        position = {n: o.delivered for n, o in self._owned.items()}
        try:
            def change(state: dict[str, Any]) -> bool:
                return _offline(state, self.reader_id, position)

            await self._sync.update(change)
        finally:
            await self._release_all()

    def __repr__(self) -> str:
        return (f"EventStreamReader({self.reader_id!r}, group={self.group.name!r}, "
                f"segments={len(self._owned)})")

"""Reader groups on the embedded cluster (client/readergroup.py): segments shared and balanced
between readers, successors read after their predecessors, checkpoints, reset, readers going
offline (by the API and by the liveness timeout), end stream cuts."""

from __future__ import annotations

import asyncio
import struct

import pytest
import pytest_asyncio


from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, InvalidNameError, ReaderGroupRecord, ScopeNotFoundError,
    StreamCut,
)
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.readergroup import (  # noqa: E402
    CheckpointError, EventStreamReader, ReaderGroupConfig, ReaderGroupError,
    ReaderGroupManager, ReaderOfflineError,
)
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402

KEYS = 16
REFRESH = 0.1  # seconds between a reader's looks at the group's state
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def env():
    async with EmbeddedCluster(2) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        async with ReaderGroupManager("sc", ctl, pool=pool) as groups:
            yield ctl, pool, groups


def event(key: int, sequence: int) -> bytes:
    return struct.pack(">II", key, sequence)


def decode(data) -> tuple[int, int]:
    return struct.unpack(">II", bytes(data))


async def write(pool, ctl, stream: str, keys: range, sequences: range) -> None:
    async with EventStreamWriter(pool, ctl, "sc", stream) as writer:
        for sequence in sequences:
            for key in keys:
                await writer.write(event(key, sequence), routing_key=f"key-{key}")


def config(*streams, **options) -> ReaderGroupConfig:
    options.setdefault("group_refresh_time", REFRESH)
    return ReaderGroupConfig(streams, **options)


async def read_until(readers: list[EventStreamReader], count: int, got: dict,
                     timeout: float = 30.0) -> None:
    """Read with every reader concurrently until ``count`` events in all were returned
    (``got``: reader id -> [(key, sequence)])."""
    done = asyncio.Event()

    async def run(reader: EventStreamReader) -> None:
        while not done.is_set():
            read = await reader.read_next_event(timeout=0.2)
            if read.event is not None:
                got.setdefault(reader.reader_id, []).append(decode(read.event))
                if sum(map(len, got.values())) >= count:
                    done.set()

    tasks = [asyncio.ensure_future(run(r)) for r in readers]
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def in_key_order(events: list[tuple[int, int]]) -> bool:
    last: dict[int, int] = {}
    for key, sequence in events:
        if last.get(key, -1) >= sequence:
            return False
        last[key] = sequence
    return True


async def test_readers_share_the_segments_and_read_every_event_once(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 4)
    await write(pool, ctl, "st", range(KEYS), range(20))
    assert await groups.create_reader_group("g", config("sc/st"))
    assert not await groups.create_reader_group("g", config("sc/st"))  # exists: left alone
    group = await groups.get_reader_group("g")
    readers = [await group.create_reader(f"r{i}") for i in range(2)]
    got: dict = {}
    await read_until(readers, KEYS * 20, got)
    everything = [e for events in got.values() for e in events]
    assert sorted(everything) == sorted(decode(event(k, s)) for k in range(KEYS)
                                        for s in range(20))
    for events in got.values():
        assert in_key_order(events)
    assert sorted(len(r.segments) for r in readers) == [2, 2]
    assert not set(readers[0].segments) & set(readers[1].segments)
    assert await group.online_readers() == ["r0", "r1"]
    with pytest.raises(ReaderGroupError):
        await group.create_reader("r0")
    for reader in readers:
        await reader.close()
    assert await group.online_readers() == []
    state = await group.state()
    assert len(state["unassigned"]) == 4 and all(state["unassigned"].values())


async def test_a_new_reader_gets_a_fair_share_within_the_refresh_time(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 6)
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    first = await group.create_reader("a")
    await first.read_next_event(timeout=0.3)
    assert len(first.segments) == 6
    second = await group.create_reader("b")
    loop = asyncio.get_running_loop()
    started = loop.time()
    while len(second.segments) < 3:
        await asyncio.gather(first.read_next_event(timeout=REFRESH),
                             second.read_next_event(timeout=REFRESH))
        assert loop.time() - started < 20 * REFRESH + 5
    assert len(first.segments) == 3 and first.released == 3
    await first.close()
    await second.close()


async def test_successors_are_read_after_every_predecessor(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    await write(pool, ctl, "st", range(KEYS), range(10))
    await ctl.scale_stream("sc", "st", [0, 1], [(0.0, 0.3), (0.3, 0.7), (0.7, 1.0)])
    await write(pool, ctl, "st", range(KEYS), range(10, 20))
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    readers = [await group.create_reader(f"r{i}") for i in range(2)]
    got: dict = {}
    await read_until(readers, KEYS * 20, got)
    everything = [e for events in got.values() for e in events]
    assert len(everything) == len(set(everything)) == KEYS * 20
    # One key's events come from one reader at a time: per key, merge by time is not known,
    # but every reader saw each key's events in order, and a successor only after its
    # predecessors were read to their ends.
    for events in got.values():
        assert in_key_order(events)
    state = await group.state()
    assert len(state["completed"]) == 2 and not state["future"]
    for reader in readers:
        await reader.close()


async def test_a_single_reader_follows_merges_in_key_order(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 3)
    await write(pool, ctl, "st", range(KEYS), range(5))
    await ctl.scale_stream("sc", "st", [0, 1], [(0.0, 2 / 3)])  # merge the first two
    await write(pool, ctl, "st", range(KEYS), range(5, 10))
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    reader = await group.create_reader("only")
    got: dict = {}
    await read_until([reader], KEYS * 10, got)
    assert in_key_order(got["only"]) and len(got["only"]) == KEYS * 10
    await reader.close()


async def test_a_checkpoint_is_a_position_a_reset_replays_from(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 3)
    await write(pool, ctl, "st", range(KEYS), range(10))
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    readers = [await group.create_reader(f"r{i}") for i in range(2)]
    before: list = []
    after: list = []
    markers: list = []

    async def run(reader):
        passed = False
        while True:
            read = await reader.read_next_event(timeout=0.5)
            if read.is_checkpoint:
                markers.append(read.checkpoint_name)
                passed = True
            elif read.event is None:
                if passed:
                    return
            else:
                (after if passed else before).append(decode(read.event))

    tasks = [asyncio.ensure_future(run(r)) for r in readers]
    # Under load: the checkpoint is taken while the readers are reading.
    checkpoint = await group.initiate_checkpoint("cp1", timeout=20)
    await write(pool, ctl, "st", range(KEYS), range(10, 15))
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert markers == ["cp1", "cp1"]
    assert sorted(before + after) == sorted(decode(event(k, s)) for k in range(KEYS)
                                            for s in range(15))
    assert list(checkpoint.stream_cuts) == ["sc/st"]
    assert len(checkpoint.stream_cuts["sc/st"].positions) == 3
    with pytest.raises(CheckpointError):
        await group.initiate_checkpoint("cp1")
    for reader in readers:
        await reader.close()

    await group.reset_to_checkpoint(checkpoint)
    replay = await group.create_reader("replay")
    got: dict = {}
    if after:
        await read_until([replay], len(after), got)
    assert sorted(got.get("replay", [])) == sorted(after)
    assert (await replay.read_next_event(timeout=0.5)).event is None
    await replay.close()


async def test_a_reader_declared_offline_gives_its_segments_back_at_its_checkpoint(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    await write(pool, ctl, "st", range(KEYS), range(10))
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    dead = await group.create_reader("dead")
    first = []
    while len(first) < 30:
        read = await dead.read_next_event(timeout=5)
        assert read.event is not None
        first.append(decode(read.event))
    checkpoint = asyncio.ensure_future(group.initiate_checkpoint("cp", timeout=20))
    while True:
        read = await dead.read_next_event(timeout=5)
        if read.is_checkpoint:
            break
        first.append(decode(read.event))
    at_checkpoint = len(first)
    await write(pool, ctl, "st", range(KEYS), range(10, 20))
    for _ in range(20):  # read on (acknowledging the checkpoint), then "die"
        read = await dead.read_next_event(timeout=5)
        first.append(decode(read.event))
    await asyncio.wait_for(checkpoint, 20)
    assert await group.reader_offline("dead")
    assert not await group.reader_offline("dead")

    async def read_on():
        while True:
            await dead.read_next_event(timeout=REFRESH)

    with pytest.raises(ReaderOfflineError):  # at its next look at the state, at the latest
        await asyncio.wait_for(read_on(), 10)
    survivor = await group.create_reader("survivor")
    got: dict = {}
    await read_until([survivor], KEYS * 20 - at_checkpoint, got)
    # Everything after the checkpoint again (the 20 events "dead" read after it included).
    assert sorted(got["survivor"]) == sorted(
        set(decode(event(k, s)) for k in range(KEYS) for s in range(20))
        - set(first[:at_checkpoint]))
    assert set(first[at_checkpoint:]) <= set(got["survivor"])
    await survivor.close()
    await dead._release_all()


async def test_a_reader_not_seen_for_the_liveness_timeout_is_declared_offline(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    await write(pool, ctl, "st", range(KEYS), range(5))
    await groups.create_reader_group("g", config("sc/st", liveness_timeout=1.0))
    group = await groups.get_reader_group("g")
    silent = await group.create_reader("silent")
    await silent.read_next_event(timeout=1)
    assert len(silent.segments) == 2
    other = await group.create_reader("other")
    got: dict = {}
    await read_until([other], KEYS * 5, got, timeout=20)
    assert sorted(got["other"]) == sorted(decode(event(k, s)) for k in range(KEYS)
                                          for s in range(5))
    assert await group.online_readers() == ["other"]
    await other.close()
    await silent._release_all()


async def test_end_stream_cuts_stop_the_readers(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 1)
    await write(pool, ctl, "st", range(1), range(10))
    end = StreamCut("sc", "st", {0: 5 * 16})  # five 8-byte events with their headers
    await groups.create_reader_group("g", config("sc/st", end=(end,)))
    group = await groups.get_reader_group("g")
    reader = await group.create_reader("r")
    got: dict = {}
    await read_until([reader], 5, got)
    assert got["r"] == [(0, s) for s in range(5)]
    assert (await reader.read_next_event(timeout=0.5)).event is None
    assert (await group.state())["completed"] == {"sc/st/0.#epoch.0": 80}
    await reader.close()


async def test_deleting_a_group_takes_its_state_away(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 1)
    await groups.create_reader_group("g", config("sc/st"))
    assert await groups.delete_reader_group("g")
    assert not await groups.delete_reader_group("g")
    with pytest.raises(ReaderGroupError):
        await groups.get_reader_group("g")


async def test_the_controller_records_the_group_its_generation_and_its_deletion(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    cut = StreamCut("sc", "st", {0: 0, 1: 0})
    await groups.create_reader_group("g", config(cut, group_refresh_time=0.5))
    record = await ctl.get_reader_group_config("sc", "g")
    assert record is not None and record.reader_group_id and record.generation == 0
    assert record.start == (cut,) and record.group_refresh_time_ms == 500
    again = await ctl.create_reader_group(record)  # an existing group is left as it is
    assert again == record
    group = await groups.get_reader_group("g")
    await group.reset_reader_group(config("sc/st"))
    reset = await ctl.get_reader_group_config("sc", "g")
    assert reset.generation == 1 and reset.reader_group_id == record.reader_group_id
    assert reset.start == (StreamCut("sc", "st", {}),)
    with pytest.raises(ControllerError) as stale:
        await ctl.update_reader_group(record)  # generation 0 is stale now
    assert stale.value.status == "INVALID_CONFIG"
    assert await ctl.get_reader_group_config("sc", "g", reader_group_id="other") is None
    with pytest.raises(ScopeNotFoundError):
        await groups.controller.create_reader_group(
            ReaderGroupRecord("nowhere", "g", start=(cut,)))
    with pytest.raises(InvalidNameError):
        await groups.create_reader_group("bad name!", config("sc/st"))
    assert await groups.delete_reader_group("g")
    assert await ctl.get_reader_group_config("sc", "g") is None


async def test_a_group_opened_before_its_readers_joined_declares_one_offline_at_once(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 4)
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")  # its copy of the state has no readers
    readers = [await group.create_reader(f"r{i}") for i in range(2)]
    while sorted(len(r.segments) for r in readers) != [2, 2]:
        await asyncio.gather(*(r.read_next_event(timeout=REFRESH) for r in readers))
    assert await group.reader_offline("r0")
    assert await group.online_readers() == ["r1"]
    while len(readers[1].segments) < 4:
        await readers[1].read_next_event(timeout=REFRESH)
    await readers[1].close()
    await readers[0]._release_all()


async def test_unread_bytes_and_stream_cuts_follow_the_checkpoints(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 2)
    await write(pool, ctl, "st", range(KEYS), range(10))  # 160 events of 8 + 8 bytes
    await groups.create_reader_group("g", config("sc/st"))
    group = await groups.get_reader_group("g")
    assert await group.unread_bytes() == 160 * 16
    cuts = await group.generate_stream_cuts()
    assert cuts["sc/st"].positions == {0: 0, 1: 0}
    reader = await group.create_reader("r")
    got: dict = {}
    await read_until([reader], 160, got)
    checkpoint = asyncio.ensure_future(group.initiate_checkpoint("all-read", timeout=20))
    while not (await reader.read_next_event(timeout=REFRESH)).is_checkpoint:
        pass
    await reader.read_next_event(timeout=REFRESH)  # records the position
    done = await asyncio.wait_for(checkpoint, 20)
    assert sum(done.stream_cuts["sc/st"].positions.values()) == 160 * 16
    assert await group.unread_bytes() == 0
    assert (await group.generate_stream_cuts())["sc/st"] == done.stream_cuts["sc/st"]
    await reader.close()


async def test_automatic_checkpoints_and_the_limit_on_outstanding_ones(env):
    ctl, pool, groups = env
    await ctl.create_stream("sc", "st", 1)
    await write(pool, ctl, "st", range(2), range(3))
    await groups.create_reader_group("auto", config("sc/st", automatic_checkpoint_interval=0.2))
    group = await groups.get_reader_group("auto")
    reader = await group.create_reader("r")
    names = []
    while len(names) < 2:
        read = await asyncio.wait_for(reader.read_next_event(timeout=REFRESH), 10)
        if read.is_checkpoint:
            names.append(read.checkpoint_name)
    assert all(name.startswith("auto-") for name in names) and names[0] != names[1]
    await reader.close()

    await groups.create_reader_group("one", config("sc/st", max_outstanding_checkpoints=1))
    group = await groups.get_reader_group("one")
    idle = await group.create_reader("idle")  # never reads: the checkpoint stays pending
    with pytest.raises(CheckpointError, match="did not complete"):
        await group.initiate_checkpoint("first", timeout=0)  # started, still pending
    with pytest.raises(CheckpointError, match="max_outstanding_checkpoints"):
        await group.initiate_checkpoint("second")
    assert (await idle.read_next_event(timeout=1)).checkpoint_name == "first"
    await idle.read_next_event(timeout=REFRESH)
    state = await group.state()
    assert not state["checkpoints"] and state["done_checkpoints"][-1]["name"] == "first"
    await idle.close()

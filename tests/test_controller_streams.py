"""Streams that scale, truncation at stream cuts, epochs, transactions and tags, through the
controller RPCs of the embedded cluster (stores + controller) and the asyncio controller client;
data written and read through the segment stores' wire protocol."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
import pytest_asyncio


from pravega_wire.client import (  # noqa: E402
    MetadataClient, RetryPolicy, SegmentReader, SegmentWriter,
)
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, RetentionPolicy, ScalingPolicy, ScopeNotFoundError,
    StreamConfiguration, StreamNotFoundError,
)
from pravega_wire.client.reader import EndOfSegment  # noqa: E402
from pravega_wire.errors import SegmentTruncatedError, TimeoutError  # noqa: E402
from pravega_wire.naming import (  # noqa: E402
    transaction_segment_name, txn_epoch, txn_id_bits, txn_id_from_bits,
)
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from pravega_wire.server import controller as server_module  # noqa: E402

FAST_RETRY = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=10)
E1 = 1 << 32  # the first segment id of epoch 1 is E1 | number


async def write_events(pool, ctl, segment: str, events) -> None:
    async with SegmentWriter(pool, ctl, segment) as writer:
        for event in events:
            writer.write_nowait(event)
        await asyncio.wait_for(writer.flush(), 10)


async def read_events(pool, ctl, segment: str, count: int, offset: int = 0) -> list[bytes]:
    """``count`` events from ``offset``, then proof that nothing more is there."""
    out = []
    async with SegmentReader(pool, ctl, segment, offset=offset, retry=FAST_RETRY) as reader:
        while len(out) < count:
            out.append(bytes(await reader.read_event(timeout=10)))
        with pytest.raises((TimeoutError, EndOfSegment)):
            await reader.read_event(timeout=0.2)
    return out


def stored(cluster, name):
    """The store's record of segment ``name`` (None once deleted)."""
    return cluster.store_for(name).storage.get(name)


@pytest_asyncio.fixture
async def env():
    async with EmbeddedCluster(2) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool:
        await ctl.create_scope("sc")
        yield cluster, ctl, pool


# ---- the .proto -------------------------------------------------------------------------------

#: Field numbers of the messages the stream RPCs added, as Pravega's Controller.proto numbers
#: them (a wrong number is a silent incompatibility with the real controller and clients).
PRAVEGA_FIELD_NUMBERS = {
    "GetEpochSegmentsRequest": "streamInfo=1 epoch=2",
    "StreamCut": "streamInfo=1 cut=2",
    "StreamCutRange": "streamInfo=1 from=2 to=3",
    "StreamCutRangeResponse": "segments=1 delegationToken=2",
    "StreamCutValidityResponse": "response=1",
    "ScaleRequest": "streamInfo=1 sealedSegments=2 newKeyRanges=3 scaleTimestamp=4",
    "ScaleResponse": "status=1 segments=2 epoch=3",
    "ScaleStatusRequest": "streamInfo=1 epoch=2",
    "ScaleStatusResponse": "status=1",
    "TxnId": "highBits=1 lowBits=2",
    "CreateTxnRequest": "streamInfo=1 lease=2 scaleGracePeriod=3",
    "CreateTxnResponse": "txnId=1 activeSegments=2 delegationToken=3",
    "TxnRequest": "streamInfo=1 txnId=2 writerId=3 timestamp=4",
    "PingTxnRequest": "streamInfo=1 txnId=2 lease=3",
    "TxnStatus": "status=1",
    "PingTxnStatus": "status=1",
    "TxnState": "state=1",
    "ListCompletedTxnRequest": "streamInfo=1",
    "TxnResponse": "txnId=1 status=2",
    "ListCompletedTxnResponse": "response=2",
    "StreamsInScopeWithTagRequest": "scope=1 tag=2 continuationToken=3",
    "StreamConfig": "streamInfo=1 scalingPolicy=2 retentionPolicy=3 tags=4 "
                    "timestampAggregationTimeout=5 rolloverSizeBytes=6",
    "RetentionPolicy": "retentionType=1 retentionParam=2 retentionMax=3",
    "ScalingPolicy": "scaleType=1 targetRate=2 scaleFactor=3 minNumSegments=4",
}


def test_messages_carry_pravegas_field_numbers():
    from pravega_wire._proto import controller_pb2

    messages = controller_pb2.DESCRIPTOR.message_types_by_name
    for name, fields in PRAVEGA_FIELD_NUMBERS.items():
        assert " ".join(f"{f.name}={f.number}" for f in messages[name].fields) == fields, name
    methods = controller_pb2.DESCRIPTOR.services_by_name["ControllerService"].methods_by_name
    for rpc, request, reply in (
            ("scale", "ScaleRequest", "ScaleResponse"),
            ("checkScale", "ScaleStatusRequest", "ScaleStatusResponse"),
            ("truncateStream", "StreamCut", "UpdateStreamStatus"),
            ("getSegmentsBetween", "StreamCutRange", "StreamCutRangeResponse"),
            ("listCompletedTransactions", "ListCompletedTxnRequest", "ListCompletedTxnResponse"),
            ("listStreamsInScopeForTag", "StreamsInScopeWithTagRequest",
             "StreamsInScopeResponse")):
        assert (methods[rpc].input_type.name, methods[rpc].output_type.name) == (request, reply)


# ---- naming ----------------------------------------------------------------------------------

def test_transaction_ids_and_names_round_trip():
    txn = txn_id_from_bits((3 << 32) | 7, -2)
    assert txn_epoch(txn) == 3
    assert txn_id_bits(txn) == ((3 << 32) | 7, -2)
    assert transaction_segment_name("sc/st/0.#epoch.0", txn) == \
        "sc/st/0.#epoch.0#transaction.0000000300000007fffffffffffffffe"
    negative = txn_id_from_bits(-1, 1)
    assert txn_id_bits(negative) == (-1, 1)
    assert negative.hex == "ffffffffffffffff0000000000000001"


# ---- scaling ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_scale_up_then_down_with_successors_epochs_and_sealed_predecessors(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 2)
    first = await ctl.get_current_segments("sc", "st")
    assert [s.segment_id for s in first] == [0, 1]
    await write_events(pool, ctl, first[0].name, [b"before-scale"])

    # Scale up: segment 0, [0, 0.5), splits in two in epoch 1 with the next unused numbers.
    new, epoch = await ctl.start_scale("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])
    assert epoch == 0
    assert [(s.segment_id, s.min_key, s.max_key) for s in new] == \
        [(E1 | 2, 0.0, 0.25), (E1 | 3, 0.25, 0.5)]
    assert [s.name for s in new] == ["sc/st/2.#epoch.1", "sc/st/3.#epoch.1"]
    assert await ctl.check_scale("sc", "st", 0)
    assert not await ctl.check_scale("sc", "st", 1)  # the current epoch: IN_PROGRESS
    current = await ctl.get_current_segments("sc", "st")
    assert [s.segment_id for s in current] == [E1 | 2, E1 | 3, 1]
    assert stored(cluster, "sc/st/0.#epoch.0").sealed
    assert not stored(cluster, "sc/st/2.#epoch.1").sealed
    assert await read_events(pool, ctl, "sc/st/0.#epoch.0", 1) == [b"before-scale"]  # then its end
    successors = await ctl.get_successors("sc", "st", 0)
    assert [(s.segment.segment_id, s.predecessors) for s in successors] == \
        [(E1 | 2, (0,)), (E1 | 3, (0,))]
    assert await ctl.get_successors("sc", "st", 1) == []  # still active

    # Scale down: all three merge into one segment in epoch 2.
    merged = await ctl.scale_stream("sc", "st", [E1 | 2, E1 | 3, 1], [(0.0, 1.0)])
    assert [(s.segment_id, s.min_key, s.max_key) for s in merged] == [((2 << 32) | 4, 0.0, 1.0)]
    for old in (E1 | 2, E1 | 3, 1):
        following = await ctl.get_successors("sc", "st", old)
        assert [(s.segment.segment_id, sorted(s.predecessors)) for s in following] == \
            [((2 << 32) | 4, [1, E1 | 2, E1 | 3])]
    assert [[s.segment_id for s in await ctl.get_epoch_segments("sc", "st", e)]
            for e in range(3)] == [[0, 1], [E1 | 2, E1 | 3, 1], [(2 << 32) | 4]]
    with pytest.raises(StreamNotFoundError):
        await ctl.get_epoch_segments("sc", "st", 3)
    with pytest.raises(ControllerError) as bad_epoch:
        await ctl.check_scale("sc", "st", 7)
    assert bad_epoch.value.status == "INVALID_INPUT"


@pytest.mark.asyncio
async def test_scale_preconditions(env):
    _, ctl, _ = env
    await ctl.create_stream("sc", "st", 2)
    for sealed, ranges in (([0], [(0.0, 0.4)]),                 # does not cover [0, 0.5)
                           ([0], [(0.0, 0.3), (0.2, 0.5)]),     # overlaps
                           ([7], [(0.0, 1.0)]),                 # not a segment
                           ([0, 0], [(0.0, 0.5)])):             # twice
        with pytest.raises(ControllerError) as refused:
            await ctl.start_scale("sc", "st", sealed, ranges)
        assert refused.value.status == "PRECONDITION_FAILED"
    assert [s.segment_id for s in await ctl.get_current_segments("sc", "st")] == [0, 1]
    with pytest.raises(StreamNotFoundError):
        await ctl.start_scale("sc", "nope", [0], [(0.0, 1.0)])
    await ctl.seal_stream("sc", "st")
    with pytest.raises(ControllerError) as sealed_stream:
        await ctl.start_scale("sc", "st", [0], [(0.0, 0.5)])
    assert sealed_stream.value.status == "FAILURE"


@pytest.mark.asyncio
async def test_segments_at_a_time_follow_the_epochs(env, monkeypatch):
    cluster, ctl, pool = env
    clock = itertools.count(1000, 1000)  # each epoch begins one second after the last
    monkeypatch.setattr(server_module, "_now_ms", lambda: next(clock))
    await ctl.create_stream("sc", "st", 1)                        # epoch 0 at 1000
    await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])  # epoch 1 at 2000
    at = {t: [(s.segment_id, s.offset) for s in await ctl.get_segments_at_time("sc", "st", t)]
          for t in (0, 500, 1500, 2000, 99_000)}
    assert at[0] == at[500] == at[1500] == [(0, 0)]
    assert at[2000] == at[99_000] == [(E1 | 1, 0), (E1 | 2, 0)]
    # After a truncation, earlier times answer the truncation cut.
    await write_events(pool, ctl, "sc/st/1.#epoch.1", [b"x" * 10])
    await ctl.truncate_stream("sc", "st", {E1 | 1: 18, E1 | 2: 0})
    assert [(s.segment_id, s.offset) for s in await ctl.get_segments_at_time("sc", "st", 1500)] \
        == [(E1 | 1, 18), (E1 | 2, 0)]
    assert [(s.segment_id, s.offset) for s in await ctl.get_segments_at_time("sc", "st", 2500)] \
        == [(E1 | 1, 18), (E1 | 2, 0)]


# ---- stream cuts and truncation --------------------------------------------------------------

@pytest.mark.asyncio
async def test_stream_cut_validity_and_segments_between(env):
    _, ctl, _ = env
    await ctl.create_stream("sc", "st", 2)
    await ctl.scale_stream("sc", "st", [0], [(0.0, 0.25), (0.25, 0.5)])   # epoch 1: 2, 3, 1
    await ctl.scale_stream("sc", "st", [E1 | 3, 1], [(0.25, 1.0)])        # epoch 2: 2, 4
    e2 = (2 << 32) | 4
    assert await ctl.is_stream_cut_valid("sc", "st", {0: 5, 1: 0})
    assert await ctl.is_stream_cut_valid("sc", "st", {E1 | 2: 0, E1 | 3: 9, 1: 0})
    assert await ctl.is_stream_cut_valid("sc", "st", {E1 | 2: 0, e2: 0})
    for bad in ({0: 0}, {0: 0, 1: 0, E1 | 2: 0}, {0: -1, 1: 0}, {9: 0}, {}):
        assert not await ctl.is_stream_cut_valid("sc", "st", bad), bad
    assert await ctl.get_segments_between("sc", "st") == [0, 1, E1 | 2, E1 | 3, e2]
    assert await ctl.get_segments_between("sc", "st", {0: 0, 1: 0}, {E1 | 2: 0, E1 | 3: 0, 1: 0}) \
        == [0, 1, E1 | 2, E1 | 3]
    assert await ctl.get_segments_between("sc", "st", {E1 | 2: 0, E1 | 3: 0, 1: 0}) == \
        [1, E1 | 2, E1 | 3, e2]
    with pytest.raises(ControllerError) as backwards:
        await ctl.get_segments_between("sc", "st", {E1 | 2: 0, e2: 0}, {0: 0, 1: 0})
    assert backwards.value.status == "INVALID_ARGUMENT"


@pytest.mark.asyncio
async def test_truncation_at_a_stream_cut_deletes_what_lies_before(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    await write_events(pool, ctl, "sc/st/0.#epoch.0", [b"old-0", b"old-1"])
    await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])
    low, high = "sc/st/1.#epoch.1", "sc/st/2.#epoch.1"
    await write_events(pool, ctl, low, [b"low-0", b"low-1", b"low-2"])
    await write_events(pool, ctl, high, [b"high-0"])
    async with MetadataClient(pool, ctl) as meta:
        event = 8 + len(b"low-0")  # an event is an 8-byte header and its data
        await ctl.truncate_stream("sc", "st", {E1 | 1: event, E1 | 2: 0})
        assert stored(cluster, "sc/st/0.#epoch.0") is None          # before the cut: deleted
        info = await meta.get_info(low)
        assert (info.start_offset, info.length) == (event, 3 * event)
        head = await ctl.get_segments_at_head("sc", "st")
        assert [(h.segment_id, h.offset) for h in head] == [(E1 | 1, event), (E1 | 2, 0)]
        assert await read_events(pool, ctl, low, 2, offset=event) == [b"low-1", b"low-2"]
        assert await read_events(pool, ctl, high, 1) == [b"high-0"]
        for bad in ({E1 | 1: 0}, {0: 0}, {E1 | 1: 0, E1 | 2: -4}):
            with pytest.raises(ControllerError) as refused:
                await ctl.truncate_stream("sc", "st", bad)
            assert refused.value.status == "INVALID_ARGUMENT"
    with pytest.raises(StreamNotFoundError):
        await ctl.truncate_stream("sc", "nope", {0: 0})
    with pytest.raises(ScopeNotFoundError):
        await ctl.truncate_stream("nope", "st", {0: 0})


# ---- transactions ----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_committed_transactions_merge_in_commit_order(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 2)
    segments = await ctl.get_current_segments("sc", "st")
    await write_events(pool, ctl, segments[0].name, [b"plain"])
    first = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    second = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    assert first.txn_id != second.txn_id and txn_epoch(first.txn_id) == 0
    assert [s.segment_id for s in first.segments] == [0, 1]
    names = first.segment_names
    assert names[0] == f"sc/st/0.#epoch.0#transaction.{first.txn_id.hex}"
    assert all(stored(cluster, name) is not None for name in names.values())
    await write_events(pool, ctl, second.segment_names[0], [b"second-a"])
    await write_events(pool, ctl, names[0], [b"first-a", b"first-b"])
    await write_events(pool, ctl, names[1], [b"first-c"])
    assert await ctl.check_transaction_state("sc", "st", first.txn_id) == "OPEN"
    assert await ctl.ping_transaction("sc", "st", first.txn_id, 60_000) == "OK"

    await ctl.commit_transaction("sc", "st", first.txn_id, writer_id="7", timestamp=1)
    assert await ctl.check_transaction_state("sc", "st", first.txn_id) == "COMMITTED"
    await ctl.commit_transaction("sc", "st", first.txn_id)  # again: still SUCCESS
    await ctl.commit_transaction("sc", "st", second.txn_id)
    assert all(stored(cluster, name) is None for name in names.values())  # merged away
    assert await read_events(pool, ctl, segments[0].name, 4) == \
        [b"plain", b"first-a", b"first-b", b"second-a"]
    assert await read_events(pool, ctl, segments[1].name, 1) == [b"first-c"]
    assert await ctl.ping_transaction("sc", "st", first.txn_id, 1000) == "COMMITTED"
    with pytest.raises(ControllerError) as late_abort:
        await ctl.abort_transaction("sc", "st", first.txn_id)
    assert late_abort.value.status == "FAILURE"
    assert await ctl.list_completed_transactions("sc", "st") == {
        first.txn_id: "COMMITTED", second.txn_id: "COMMITTED"}


@pytest.mark.asyncio
async def test_aborted_transactions_leave_nothing(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    txn = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    name = txn.segment_names[0]
    await write_events(pool, ctl, name, [b"never"])
    await ctl.abort_transaction("sc", "st", txn.txn_id)
    await ctl.abort_transaction("sc", "st", txn.txn_id)  # again: still SUCCESS
    assert await ctl.check_transaction_state("sc", "st", txn.txn_id) == "ABORTED"
    assert stored(cluster, name) is None
    async with MetadataClient(pool, ctl) as meta:
        assert (await meta.get_info("sc/st/0.#epoch.0")).length == 0
        assert not (await meta.get_info(name)).exists
    with pytest.raises(ControllerError) as late_commit:
        await ctl.commit_transaction("sc", "st", txn.txn_id)
    assert late_commit.value.status == "FAILURE"
    assert await ctl.list_completed_transactions("sc", "st") == {txn.txn_id: "ABORTED"}
    unknown = uuid.UUID(int=12345)
    assert await ctl.check_transaction_state("sc", "st", unknown) == "UNKNOWN"
    assert await ctl.ping_transaction("sc", "st", unknown, 1000) == "UNKNOWN"
    with pytest.raises(ControllerError) as missing:
        await ctl.commit_transaction("sc", "st", unknown)
    assert missing.value.status == "TRANSACTION_NOT_FOUND"
    with pytest.raises(StreamNotFoundError):
        await ctl.abort_transaction("sc", "nope", txn.txn_id)


@pytest.mark.asyncio
async def test_an_unpinged_transaction_times_out_and_a_pinged_one_does_not(env):
    cluster, ctl, pool = env
    controller = cluster.controller
    await ctl.create_stream("sc", "st", 1)
    idle = await ctl.create_transaction("sc", "st", lease_ms=200)
    kept = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    assert await ctl.ping_transaction("sc", "st", kept.txn_id, 10**9) == "LEASE_TOO_LARGE"
    await write_events(pool, ctl, idle.segment_names[0], [b"lost"])
    assert await asyncio.wait_for(
        controller.transaction_finished("sc", "st", idle.txn_id), 10) == "ABORTED"
    assert stored(cluster, idle.segment_names[0]) is None
    assert await ctl.ping_transaction("sc", "st", idle.txn_id, 1000) == "ABORTED"
    assert await ctl.check_transaction_state("sc", "st", kept.txn_id) == "OPEN"
    with pytest.raises(ControllerError) as bad_lease:
        await ctl.create_transaction("sc", "st", lease_ms=0)
    assert bad_lease.value.status == "INVALID_ARGUMENT"


@pytest.mark.asyncio
async def test_transactions_across_scale_and_seal(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "st", 1)
    old = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    await ctl.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])
    new = await ctl.create_transaction("sc", "st", lease_ms=60_000)
    assert txn_epoch(new.txn_id) == 1
    assert [s.segment_id for s in new.segments] == [E1 | 1, E1 | 2]
    await ctl.seal_stream("sc", "st")  # aborts the open transactions
    for txn in (old, new):
        assert await ctl.check_transaction_state("sc", "st", txn.txn_id) == "ABORTED"
        assert all(stored(cluster, n) is None for n in txn.segment_names.values())
    with pytest.raises(ControllerError) as sealed:
        await ctl.create_transaction("sc", "st")
    assert sealed.value.status == "FAILED_PRECONDITION"


# ---- configuration, tags, recursive delete ---------------------------------------------------

@pytest.mark.asyncio
async def test_policies_and_tags_are_stored_updated_and_listed(env):
    _, ctl, _ = env
    config = StreamConfiguration(ScalingPolicy.by_event_rate(100, 2, 3),
                                 RetentionPolicy.by_time(3_600_000), ("blue", "big"),
                                 timestamp_aggregation_timeout=5, rollover_size_bytes=1 << 20)
    assert await ctl.create_stream("sc", "a", config=config)
    assert await ctl.create_stream("sc", "b", tags=["blue"])
    assert await ctl.create_stream("sc", "c")
    assert await ctl.get_stream_configuration("sc", "a") == config
    assert len(await ctl.get_current_segments("sc", "a")) == 3  # min_segments
    assert await ctl.list_streams("sc", tag="blue") == ["a", "b"]
    assert await ctl.list_streams("sc", tag="big") == ["a"]
    updated = StreamConfiguration(ScalingPolicy.by_data_rate(1024, 3, 2),
                                  RetentionPolicy.by_size(1 << 30), ("red",))
    await ctl.update_stream("sc", "a", updated)
    assert await ctl.get_stream_configuration("sc", "a") == updated
    assert await ctl.list_streams("sc", tag="blue") == ["b"]
    assert await ctl.list_streams("sc", tag="red") == ["a"]
    with pytest.raises(ScopeNotFoundError):
        await ctl.list_streams("nope", tag="red")
    await ctl.seal_stream("sc", "c")
    with pytest.raises(ControllerError) as sealed:
        await ctl.update_stream("sc", "c", updated)
    assert sealed.value.status == "STREAM_SEALED"
    with pytest.raises(StreamNotFoundError):
        await ctl.update_stream("sc", "nope", updated)
    with pytest.raises(ValueError):
        ScalingPolicy.by_event_rate(0, 2, 1)
    with pytest.raises(ValueError):
        RetentionPolicy("forever")


@pytest.mark.asyncio
async def test_delete_scope_recursive_removes_streams_segments_and_transactions(env):
    cluster, ctl, pool = env
    await ctl.create_stream("sc", "one", 2)
    await ctl.create_stream("sc", "two", 1)
    await ctl.seal_stream("sc", "two")
    txn = await ctl.create_transaction("sc", "one", lease_ms=60_000)
    await write_events(pool, ctl, "sc/one/0.#epoch.0", [b"data"])
    await ctl.create_scope("other")
    await ctl.create_stream("other", "kept", 1)
    await ctl.delete_scope_recursive("sc")
    assert not await ctl.scope_exists("sc")
    assert await ctl.list_scopes() == ["other"]
    for name in ("sc/one/0.#epoch.0", "sc/one/1.#epoch.0", "sc/two/0.#epoch.0",
                 *txn.segment_names.values()):
        assert stored(cluster, name) is None, name
    assert stored(cluster, "other/kept/0.#epoch.0") is not None
    await ctl.delete_scope_recursive("sc")  # a missing scope: nothing to do
    with pytest.raises(SegmentTruncatedError):  # a reader's view of a deleted segment
        await read_events(pool, ctl, "sc/one/0.#epoch.0", 1)


@pytest.mark.asyncio
async def test_transaction_segments_share_their_parents_endpoint(env, monkeypatch):
    cluster, ctl, _ = env
    await ctl.create_stream("sc", "st", 1)
    calls = []
    call = ctl._call

    async def counting(rpc, request, *args, **kwargs):
        calls.append(rpc)
        return await call(rpc, request, *args, **kwargs)

    monkeypatch.setattr(ctl, "_call", counting)
    parent = "sc/st/0.#epoch.0"
    endpoint = await ctl.get_endpoint(parent)
    assert endpoint == cluster.store_for(parent).endpoint
    for _ in range(3):
        txn = await ctl.create_transaction("sc", "st", lease_ms=60_000)
        assert await ctl.get_endpoint(txn.segment_names[0]) == endpoint
    assert calls.count("getURI") == 1
    ctl.invalidate(txn.segment_names[0])  # forgets the parent's answer too
    assert await ctl.get_endpoint(parent) == endpoint
    assert calls.count("getURI") == 2


@pytest.mark.asyncio
async def test_no_lease_runs_out_on_a_stopped_controller(env):
    cluster, ctl, _ = env
    controller = cluster.controller
    await ctl.create_stream("sc", "st", 1)
    txn = await ctl.create_transaction("sc", "st", lease_ms=100)
    await controller.stop()
    with pytest.raises(asyncio.TimeoutError):  # five leases long: nothing aborts it
        await asyncio.wait_for(controller.transaction_finished("sc", "st", txn.txn_id), 0.5)
    assert stored(cluster, txn.segment_names[0]) is not None

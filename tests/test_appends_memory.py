"""Bounded state: 100 000 writers set up, used and closed in turn on one CommandEncoder keep its
memory flat (measured with tracemalloc, not time), whatever the block sizing. Java keeps every
session ever set up and drops the connection at the 2000th. Both twins."""

from __future__ import annotations

import gc
import tracemalloc
import uuid

import pytest
from conftest import TWINS, load_twin

from pravega_wire import commands as C

WRITERS = 100_000
# Writers run untraced first (tracemalloc slows every allocation several times), then traced
# in two equal halves. The adaptive mode allocates more per writer (a tracker per flow, map
# sweeps), so it traces fewer.
TRACED = {"batched": 50_000, "adaptive": 20_000}
ALLOWED_GROWTH = 64 * 1024  # bytes


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


def make_encoder(twin, mode):
    if mode == "batched":  # each writer's block is still open when its session closes
        return twin.CommandEncoder(lambda flow_id: 1024)
    now = [0]

    def clock():
        now[0] += 1000
        return now[0]
    # one flow per writer: the per-flow map must stay bounded too
    return twin.CommandEncoder(trackers=twin.FlowBatchSizeTrackers(clock, max_flows=1000))


def run_writers(enc, first: int, count: int) -> int:
    sent = 0
    payload = b"p" * 40
    setup = C.SetupAppend
    for i in range(first, first + count):
        writer = uuid.UUID(int=i + 1)
        segment = f"scope/stream/{i}"
        rid = (i % 2_000_000 + 1) << 32
        enc.write_command(setup(rid, writer, segment, ""))
        enc.append_event(segment, writer, 1, payload, rid)
        enc.append_event(segment, writer, 2, payload, rid)
        assert enc.close_session(segment, writer)
        sent += len(enc.data_to_send())
    return sent


@pytest.mark.parametrize("mode", ["batched", "adaptive"])
def test_100k_writers_keep_memory_flat(twin, mode):
    """Tracing starts after the warm-up, so traced memory still allocated later is what the
    writers since then left behind: nothing but the bounded per-flow map may stay."""
    enc = make_encoder(twin, mode)
    warm_up = WRITERS - TRACED[mode]
    half = TRACED[mode] // 2
    run_writers(enc, 0, warm_up)
    gc.collect()
    tracemalloc.start()
    try:
        sent = run_writers(enc, warm_up, half)
        gc.collect()
        middle, _peak = tracemalloc.get_traced_memory()
        sent += run_writers(enc, warm_up + half, half)
        gc.collect()
        end, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > TRACED[mode] * 100  # the writers really wrote
    assert enc.session_count == 0
    assert not enc.closed  # far beyond Java's 2000 sessions, but never more than 1 live
    assert end - middle < ALLOWED_GROWTH, f"grew by {end - middle} bytes"
    if mode == "adaptive":
        assert len(enc.trackers) <= 1000  # the map holds at most max_flows trackers
        assert end < ALLOWED_GROWTH + 1000 * 512
    else:
        assert end < ALLOWED_GROWTH, f"{end} bytes retained"

"""A new flow's batch-size tracker starts from the estimates of the flow made before it on the
same connection (FlowBatchSizeTrackers), so that a fresh writer on a warm pool batches at once as
the previous one did; the first flow starts from Java's defaults. Both twins."""

from __future__ import annotations

import pytest
from conftest import TWINS, load_twin


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def _burst(tracker, clock, first, count, size=108, gap_ns=500):
    """``count`` appends ``gap_ns`` apart, none acknowledged until the last; then an ack of all
    but the last few (what a burst written without yielding looks like)."""
    for number in range(first, first + count):
        clock.now += gap_ns
        tracker.record_append(number, size)
    for acked in range(first, first + count - 10, max(1, count // 2000)):
        tracker.record_ack(acked)


def test_a_new_flow_starts_where_the_previous_one_left_off(twin):
    clock = Clock()
    flows = twin.FlowBatchSizeTrackers(clock)
    cold = flows.tracker(1)
    cold.record_append(1, 108)
    cold.record_append(2, 108)  # two outstanding: batching is on
    cold_size = cold.get_append_block_size()
    assert 0 < cold_size < 4096  # Java's defaults: small blocks at first
    _burst(cold, clock, 3, 50_000)
    warmed = cold.get_append_block_size()
    assert warmed > 50 * cold_size
    fresh = flows.tracker(2)  # a new writer's flow on the same connection
    fresh.record_append(1, 108)
    fresh.record_append(2, 108)
    assert fresh.get_append_block_size() >= warmed // 2
    # Its own event numbers and times are its own: one outstanding append means no batching.
    other = flows.tracker(3)
    other.record_append(1, 108)
    assert other.get_append_block_size() == 0
    # A separate map (another connection) starts cold.
    elsewhere = twin.FlowBatchSizeTrackers(clock).tracker(2)
    elsewhere.record_append(1, 108)
    elsewhere.record_append(2, 108)
    assert elsewhere.get_append_block_size() < 4096


def test_a_closed_flows_tracker_is_dropped_and_still_seeds_the_next(twin):
    clock = Clock()
    flows = twin.FlowBatchSizeTrackers(clock)
    first = flows.tracker(1)
    _burst(first, clock, 1, 20_000)
    warmed = first.get_append_block_size()
    assert flows.discard(1) and not first.live and 1 not in flows and len(flows) == 0
    assert not flows.discard(1) and not flows.discard(99)
    second = flows.tracker(2)
    second.record_append(1, 108)
    second.record_append(2, 108)
    assert second.get_append_block_size() >= warmed // 2


def test_closing_a_session_drops_its_flows_tracker(twin):
    import uuid

    from pravega_wire import commands as C
    encoder = twin.CommandEncoder()
    writer = uuid.uuid4()
    request_id = 7 << 32
    encoder.write_command(C.SetupAppend(request_id, writer, "sc/st/0", ""))
    encoder.append_event("sc/st/0", writer, 1, b"x" * 100, request_id)
    assert 7 in encoder.trackers
    assert encoder.close_session("sc/st/0", writer)
    assert 7 not in encoder.trackers and len(encoder.trackers) == 0
    assert encoder.record_ack(request_id, 1) is None  # a late ack for it is ignored

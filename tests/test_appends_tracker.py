"""The adaptive block size (docs/protocol.md §5): AppendBatchSizeTracker's formula and its edges
(no batching at ≤ 1 outstanding append, the 20 ms cap, the 523 264-byte cap, Java's arithmetic
for division by zero, NaN and int overflow), the environment constants, and the per-flow map's
size bound and idle expiry. Every test runs against both twins."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import TWINS, load_twin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pravega_wire import InvalidMessageError
from pravega_wire import commands as C


@pytest.fixture(params=TWINS)
def twin(request):
    return load_twin("_appends", request.param)


class Clock:
    """A fake monotonic clock: returns ``now``; ``advance`` moves it."""

    def __init__(self, now=0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, ns):
        self.now += ns


class Oracle:
    """docs/protocol.md §5.1 written out plainly, for ordinary values (no zero divisors)."""

    def __init__(self, now, fraction=0.5, base_time=0, base_size=0, max_size=523264):
        self.last_append = self.last_ack = 0
        self.last_time = now
        self.size_w = math.sqrt(1024.0)
        self.npa = 10.0 * 1_000_000
        self.outstanding = 20.0
        self.fraction, self.base_time, self.base_size, self.max_size = (
            fraction, base_time, base_size, max_size)

    def record_append(self, ev, size, now):
        now = max(self.last_time, now)
        gap, self.last_time, self.last_append = now - self.last_time, now, ev
        self.npa = 0.001 * gap + 0.999 * self.npa
        self.size_w = 0.01 * math.sqrt(size) + 0.99 * self.size_w

    def record_ack(self, ev):
        self.last_ack = ev
        self.outstanding = 0.001 * (self.last_append - ev) + 0.999 * self.outstanding

    def block_size(self):
        if self.last_append - self.last_ack <= 1:
            return 0
        max_appends = max(1.0, 20 * 1_000_000.0 / self.npa)
        extra = max(0.0, self.base_time / self.npa)
        n = max(min(self.outstanding * self.fraction + extra, max_appends), 1.0)
        size = int(n * (self.size_w * abs(self.size_w))) + self.base_size
        return max(min(size, self.max_size), 0)


def test_defaults(twin):
    assert twin.MAX_BATCH_TIME_MILLIS == 20
    constants = twin.read_batch_size_env({})
    assert tuple(constants) == (523264, 0, 0, 0.5)
    assert constants.max_batch_size == 523264 and constants.outstanding_fraction == 0.5
    assert twin.AppendBatchSizeTracker(Clock()).get_batch_timeout() == 20


def test_no_batching_while_at_most_one_append_is_outstanding(twin):
    clock = Clock()
    t = twin.AppendBatchSizeTracker(clock)
    assert t.get_append_block_size() == 0
    clock.advance(1_000)
    t.record_append(1, 100)
    assert t.get_append_block_size() == 0  # 1 - 0 in flight
    t.record_append(2, 100)
    assert t.get_append_block_size() > 0  # 2 in flight
    assert t.record_ack(1) == 1
    assert t.get_append_block_size() == 0  # 1 in flight again
    assert t.record_ack(2) == 0
    assert t.get_append_block_size() == 0


def test_the_20ms_cap(twin):
    """Half the appends in flight would be 10 appends, but at one append per 10 ms only about
    2 fit in 20 ms: the block is about 2 appends long."""
    clock = Clock()
    t = twin.AppendBatchSizeTracker(clock)
    oracle = Oracle(0)
    for ev in range(1, 4):
        clock.advance(10_000_000)
        t.record_append(ev, 1024)
        oracle.record_append(ev, 1024, clock.now)
    size = t.get_append_block_size()
    assert size == oracle.block_size()
    assert 2 * 1000 < size < 2 * 1030  # about 2 × 1024, not 10 × 1024


def test_the_max_batch_size_cap(twin):
    clock = Clock()
    t = twin.AppendBatchSizeTracker(clock, base_size=10_000_000)
    t.record_append(1, 100)
    t.record_append(2, 100)
    assert t.get_append_block_size() == 523264
    small = twin.AppendBatchSizeTracker(clock, max_batch_size=1000, base_size=10_000_000)
    small.record_append(5, 10)
    assert small.get_append_block_size() == 1000


def test_zero_denominator_gives_an_infinite_fraction(twin):
    """PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR=0: Java's 1.0 / 0 is +infinity, so the block is
    capped by the 20 ms window (or is one append when the outstanding average is negative)."""
    fraction = twin.read_batch_size_env(
        {"PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR": "0"}).outstanding_fraction
    assert fraction == math.inf
    clock = Clock()
    t = twin.AppendBatchSizeTracker(clock, outstanding_fraction=fraction)
    oracle = Oracle(0)
    for ev in (1, 2, 3):
        clock.advance(10_000_000)
        t.record_append(ev, 1024)
        oracle.record_append(ev, 1024, clock.now)
    capped = oracle.block_size()  # at 10 ms per append: ~2 appends
    assert t.get_append_block_size() == capped
    for _ in range(30):  # acks far beyond the appends drive the average negative
        t.record_ack(1_000_000)
    t.record_append(2_000_000, 1024)
    assert 0 < t.get_append_block_size() < capped  # -inf appends → clamped to one append


@pytest.mark.parametrize("base_size, expected", [(0, 0), (123, 123)])
def test_nan_is_guarded(twin, base_size, expected):
    """A NaN count of appends casts to 0 (Java's (int) NaN), leaving the base size."""
    t = twin.AppendBatchSizeTracker(Clock(), outstanding_fraction=math.nan, base_size=base_size)
    t.record_append(7, 100)
    assert t.get_append_block_size() == expected


def test_large_base_time(twin):
    clock = Clock()
    t = twin.AppendBatchSizeTracker(clock, base_time_nanos=2 ** 31 - 1)
    oracle = Oracle(0, base_time=2 ** 31 - 1)
    for ev in (1, 2, 3):
        clock.advance(10_000_000)
        t.record_append(ev, 1024)
        oracle.record_append(ev, 1024, clock.now)
    assert t.get_append_block_size() == oracle.block_size()


@pytest.mark.parametrize("base_size, expected", [(0, 523264), (1, 0)])
def test_int_overflow_follows_java(twin, base_size, expected):
    """Huge appends saturate Java's (int) cast at 2**31 - 1; adding BASE_SIZE then wraps to a
    negative int, which clamps to 0, as in Java."""
    t = twin.AppendBatchSizeTracker(Clock(), base_size=base_size)
    for ev in range(1, 1001):
        t.record_append(ev, 2 ** 31 - 1)
    assert t.get_append_block_size() == expected


def test_long_overflow_follows_java(twin):
    t = twin.AppendBatchSizeTracker(Clock())
    t.record_append(2 ** 63 - 1, 10)
    assert t.record_ack(-1) == -(2 ** 63)  # (2**63 - 1) - (-1) wraps
    assert 0 <= t.get_append_block_size() <= 523264


def test_clock_going_backwards_counts_as_no_gap(twin):
    clock = Clock(1_000_000_000)
    t = twin.AppendBatchSizeTracker(clock)
    oracle = Oracle(clock.now)
    for ev, step in ((1, -500_000_000), (2, 10), (3, -7), (4, 3_000_000)):
        clock.advance(step)
        t.record_append(ev, 500)
        oracle.record_append(ev, 500, clock.now)
    assert t.get_append_block_size() == oracle.block_size()
    assert t.last_used == 1_000_000_000  # the latest time seen never moves back


def test_bad_arguments(twin):
    t = twin.AppendBatchSizeTracker(Clock())
    for call in (lambda: t.record_append("1", 10), lambda: t.record_append(1, -1),
                 lambda: t.record_append(2 ** 63, 1), lambda: t.record_ack(1.5)):
        with pytest.raises(InvalidMessageError):
            call()
    for kwargs in ({"max_batch_size": -1}, {"base_size": 2 ** 31}, {"base_time_nanos": "0"}):
        with pytest.raises(InvalidMessageError):
            twin.AppendBatchSizeTracker(Clock(), **kwargs)
    with pytest.raises(TypeError):
        twin.AppendBatchSizeTracker("not a clock")
    with pytest.raises(InvalidMessageError, match="clock"):
        twin.AppendBatchSizeTracker(lambda: 1.5)


OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 20_000), st.integers(-1_000, 50_000_000)),
    st.tuples(st.just("ack"), st.integers(-3, 40), st.just(0))), max_size=60)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_formula_matches_the_spec(twin, ops):
    clock = Clock(5_000)
    t = twin.AppendBatchSizeTracker(clock)
    oracle = Oracle(clock.now)
    ev = 0
    for kind, a, b in ops:
        if kind == "append":
            ev += 1
            clock.advance(b)
            t.record_append(ev, a)
            oracle.record_append(ev, a, clock.now)
        else:
            t.record_ack(ev - a)
            oracle.record_ack(ev - a)
        assert t.get_append_block_size() == oracle.block_size()


# --------------------------------------------------------------------------------------------
# Environment


@pytest.mark.parametrize("env, expected", [
    ({"PRAVEGA_MAX_BATCH_SIZE": "1000"}, (1000, 0, 0, 0.5)),
    ({"PRAVEGA_MAX_BATCH_SIZE": "+7", "PRAVEGA_BATCH_BASE_SIZE": "-5"}, (7, 0, -5, 0.5)),
    ({"PRAVEGA_BATCH_BASE_TIME_NANOS": "2147483647"}, (523264, 2 ** 31 - 1, 0, 0.5)),
    ({"PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR": "4"}, (523264, 0, 0, 0.25)),
    ({"PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR": "-2"}, (523264, 0, 0, -0.5)),
])
def test_environment(twin, env, expected):
    assert tuple(twin.read_batch_size_env(env)) == expected


@pytest.mark.parametrize("env", [
    {"PRAVEGA_MAX_BATCH_SIZE": "abc"}, {"PRAVEGA_MAX_BATCH_SIZE": "1_000"},
    {"PRAVEGA_MAX_BATCH_SIZE": " 5"}, {"PRAVEGA_MAX_BATCH_SIZE": "-1"},
    {"PRAVEGA_MAX_BATCH_SIZE": str(C.MAX_WIRECOMMAND_SIZE // 2)},
    {"PRAVEGA_BATCH_BASE_SIZE": str(2 ** 31)}, {"PRAVEGA_BATCH_OUTSTANDING_DENOMINATOR": ""},
])
def test_environment_rejects(twin, env):
    with pytest.raises(ValueError, match=next(iter(env))):
        twin.read_batch_size_env(env)


# --------------------------------------------------------------------------------------------
# FlowBatchSizeTrackers


def test_flow_map_creates_on_first_use(twin):
    flows = twin.FlowBatchSizeTrackers(Clock())
    assert flows.get(3) is None and 3 not in flows and len(flows) == 0
    t = flows.tracker(3)
    assert flows.tracker(3) is t and flows.get(3) is t and 3 in flows and len(flows) == 1
    assert t.live
    assert flows.max_flows == twin.DEFAULT_MAX_FLOWS == 10_000
    assert flows.idle_expiry_ns == twin.DEFAULT_FLOW_IDLE_EXPIRY_NS == 600 * 10 ** 9
    with pytest.raises(InvalidMessageError):
        flows.tracker(2 ** 31)


def test_flow_map_is_bounded(twin):
    clock = Clock()
    flows = twin.FlowBatchSizeTrackers(clock, max_flows=10)
    made = {}
    for flow in range(100):
        clock.advance(1_000)
        made[flow] = flows.tracker(flow)
        made[flow].record_append(1, 10)
        assert len(flows) <= 10
    assert 99 in flows and 98 in flows  # the most recently used survive
    assert not made[0].live and made[99].live
    assert sum(t.live for t in made.values()) == len(flows)


def test_flow_map_expires_idle_flows(twin):
    clock = Clock()
    expiry = 1_000_000_000
    flows = twin.FlowBatchSizeTrackers(clock, idle_expiry_ns=expiry)
    idle, busy = flows.tracker(1), flows.tracker(2)
    clock.advance(expiry + 1)
    busy.record_append(1, 10)
    assert flows.expire() == 1
    assert 1 not in flows and not idle.live and busy.live
    clock.advance(expiry // 2)
    busy.record_ack(1)
    clock.advance(expiry // 2 + 1)
    flows.tracker(3)  # adding a flow sweeps when half the expiry has passed: 2 stays
    assert 2 in flows and 3 in flows
    clock.advance(expiry + 1)
    flows.tracker(4)
    assert set(f for f in (1, 2, 3, 4) if f in flows) == {4}


def test_flow_map_passes_tracker_arguments(twin):
    flows = twin.FlowBatchSizeTrackers(Clock(), base_size=50_000)
    t = flows.tracker(1)
    t.record_append(5, 1)
    assert t.get_append_block_size() >= 50_000
    with pytest.raises(InvalidMessageError):
        twin.FlowBatchSizeTrackers(Clock(), max_flows=0)
    with pytest.raises(TypeError):
        twin.FlowBatchSizeTrackers(Clock(), no_such_argument=1)


def test_encoder_replaces_an_evicted_tracker(twin):
    clock = Clock()
    flows = twin.FlowBatchSizeTrackers(clock, max_flows=1)
    enc = twin.CommandEncoder(trackers=flows)
    w1, w2 = uuid.uuid4(), uuid.uuid4()
    enc.write_command(C.SetupAppend(1 << 32, w1, "a", ""))
    enc.write_command(C.SetupAppend(2 << 32, w2, "b", ""))
    enc.append_event("a", w1, 1, b"x", 1 << 32)
    first = flows.get(1)
    clock.advance(1)
    enc.append_event("b", w2, 1, b"y", 2 << 32)  # evicts flow 1
    assert not first.live and 1 not in flows
    enc.append_event("a", w1, 2, b"z", 1 << 32)
    assert flows.get(1) is not None and flows.get(1) is not first and flows.get(1).live


def _import_in_subprocess(env_value: str):
    env = dict(os.environ, PRAVEGA_MAX_BATCH_SIZE=env_value)
    code = ("from pravega_wire import appends, _appends_py; print(appends.MAX_BATCH_SIZE, "
            "appends.impl.MAX_BATCH_SIZE, _appends_py.MAX_BATCH_SIZE)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=60)


def test_environment_is_read_at_import():
    done = _import_in_subprocess("4096")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4096", "4096", "4096"]
    bad = _import_in_subprocess("lots")
    assert bad.returncode != 0
    assert "ValueError: environment variable PRAVEGA_MAX_BATCH_SIZE='lots'" in bad.stderr

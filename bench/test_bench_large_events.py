"""Large events against 1 MiB events: MB/s of acknowledged payload from one SegmentWriter to the
embedded segment store (in a child process, as in ``test_bench_clients.py``, whose
environment this module shares), each round writing ``ROUND_BYTES`` of payload and flushing:

* ``1MiB-events``: 1 MiB events with ``await write`` (ordinary appends);
* ``large-32MiB``: 32 MiB events, each written through a transient segment (CreateTransientSegment,
  four 8 MiB ConditionalBlockEnds pipelined, MergeSegments);
* ``large-9MiB``: 9 MiB events (two chunks, the second one 1 MiB: the per-event overhead).

Run: ``.venv/bin/python -m pytest bench/test_bench_large_events.py --benchmark-only -q
-p no:cacheprovider --benchmark-columns=median,mean,stddev,rounds``; ``extra_info`` holds
MB_per_s of the median round. Quote medians; the machine is shared.
"""

from __future__ import annotations

import os

import pytest

from test_bench_clients import _Cpu, _record, env  # noqa: F401 - env: its fixture

MIB = 1024 * 1024
ROUND_BYTES = 64 * MIB
ROUNDS = 5
SIZES = {"1MiB-events": MIB, "large-9MiB": 9 * MIB, "large-32MiB": 32 * MIB}


async def _write(writer, event: bytes, count: int) -> None:
    for _ in range(count):
        await writer.write(event)
    await writer.flush()


@pytest.mark.parametrize("case", SIZES)
def test_large_events_against_1mib_events(benchmark, env, case):
    size = SIZES[case]
    count = ROUND_BYTES // size
    benchmark.group = f"one writer, about {ROUND_BYTES // MIB} MiB acknowledged per round"
    event = os.urandom(size)
    writer = env.writer(env.new_segment("large"))
    cpu = _Cpu(env, lambda: env.run(_write(writer, event, count)))
    try:
        benchmark.pedantic(cpu, setup=lambda: env.truncate([writer]), rounds=ROUNDS,
                           warmup_rounds=1)
        assert writer.acked_events == len(cpu.client) * count
        _record(benchmark, count, count * size, cpu)
    finally:
        env.discard([writer])

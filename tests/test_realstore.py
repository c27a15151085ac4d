"""The embedded segment store answers as Pravega's real segment store does: every transcript
recorded from the real store (tests/data/realstore/public.json, see tests/realstore.py) replays
against it with the same frames, silences and closes, and "held at least" for held replies.

All scenarios are replayed once, concurrently (each under its own scope token), against one
store with its default settings; each scenario is then its own test case. The codec twin in use
(compiled, or pure under PRAVEGA_WIRE_NO_EXTENSIONS=1) decodes both sides.
"""

from __future__ import annotations

import asyncio

import pytest

from pravega_wire.server import SegmentStore
from realstore import Timing, load_scenarios, replay

SCENARIOS = load_scenarios()
#: Scenarios replayed at once (all: most of a replay is waiting through recorded silences).
_CONCURRENCY = len(SCENARIOS)


def test_transcripts_are_the_recorded_set():
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == 73 and len(set(names)) == 73


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[str]]:
    async def run_all() -> dict[str, list[str]]:
        limit = asyncio.Semaphore(_CONCURRENCY)
        async with SegmentStore() as store:
            host, port = store.endpoint

            async def one(scenario):
                async with limit:
                    return await replay(scenario, host, port, Timing())

            results = await asyncio.gather(*(one(s) for s in SCENARIOS))
        return {s["name"]: problems for s, problems in zip(SCENARIOS, results)}

    return asyncio.run(run_all())


@pytest.mark.parametrize("name", [s["name"] for s in SCENARIOS])
def test_embedded_store_answers_like_the_real_store(outcomes, name):
    problems = outcomes[name]
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)

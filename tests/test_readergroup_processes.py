"""A reader group shared by readers in separate OS processes (tests/readergroup_worker.py), over
64 segments, while the stream scales and one reader process is killed with SIGKILL.

What must hold: the readers take a fair share each; while no reader dies every event is
delivered exactly once; each reader gets each routing key's events in order; after the kill the
dead reader's segments go back to the group (at its last checkpoint, once the others declare it
offline after the liveness timeout) and every event is delivered at least once, the only
duplicates being events the killed reader had read after its checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys

import pytest


from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.readergroup import (  # noqa: E402
    ReaderGroupConfig, ReaderGroupManager,
)
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402
from test_readergroup import in_key_order  # noqa: E402

pytestmark = pytest.mark.asyncio

WORKER = os.path.join(os.path.dirname(__file__), "readergroup_worker.py")
SEGMENTS = 64
READERS = 3
KEYS = 256
#: Bound on every wait (seconds).
WAIT = 45.0


class Worker:
    """A reader process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, reader_id: str,
                 changed: asyncio.Condition):
        self.process = process
        self.reader_id = reader_id
        self.events: list[tuple[int, int]] = []
        self.checkpoints: list[str] = []
        self.segments = 0
        self.exited = False
        self._changed = changed
        self.pump = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            kind, _, rest = line.decode().strip().partition(" ")
            if kind == "E":
                data = bytes.fromhex(rest.split()[2])
                self.events.append(struct.unpack(">II", data))
            elif kind == "C":
                self.checkpoints.append(rest)
            elif kind == "S":
                self.segments = int(rest)
            elif kind == "X":
                self.exited = True
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()


async def start_worker(uri: str, reader_id: str, changed: asyncio.Condition) -> Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, uri, "sc", "g", reader_id,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    return Worker(process, reader_id, changed)


async def wait_until(changed: asyncio.Condition, predicate, what: str) -> None:
    async def wait() -> None:
        async with changed:
            await changed.wait_for(predicate)
    try:
        await asyncio.wait_for(wait(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


async def write(writer: EventStreamWriter, sequences: range) -> set[tuple[int, int]]:
    for sequence in sequences:
        for key in range(KEYS):
            await writer.write(struct.pack(">II", key, sequence), routing_key=f"key-{key}")
    await writer.flush()
    return {(key, sequence) for key in range(KEYS) for sequence in sequences}


async def test_readers_in_processes_share_a_scaling_stream_and_survive_a_sigkill():
    async with EmbeddedCluster(2) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig()) as pool, \
            ReaderGroupManager("sc", ctl, pool=pool) as groups:
        await ctl.create_scope("sc")
        await ctl.create_stream("sc", "st", SEGMENTS)
        await groups.create_reader_group("g", ReaderGroupConfig(
            ["sc/st"], group_refresh_time=0.3, liveness_timeout=3.0))
        group = await groups.get_reader_group("g")
        changed = asyncio.Condition()
        workers = [await start_worker(cluster.controller_uri, f"r{i}", changed)
                   for i in range(READERS)]
        try:
            # A fair share each: 64 segments over 3 readers is 21 or 22.
            await wait_until(changed, lambda: sorted(w.segments for w in workers) == [21, 21, 22],
                             "the readers balance the segments")

            def delivered() -> list[tuple[int, int]]:
                return [e for w in workers for e in w.events]

            async with EventStreamWriter(pool, ctl, "sc", "st") as writer:
                written = await write(writer, range(0, 3))
                # Split segment 0 and merge segments 1 and 2 while the readers read.
                width = 1 / SEGMENTS
                await ctl.scale_stream("sc", "st", [0], [(0.0, width / 2), (width / 2, width)])
                await ctl.scale_stream("sc", "st", [1, 2], [(width, 3 * width)])
                written |= await write(writer, range(3, 6))
                await wait_until(changed, lambda: len(delivered()) >= len(written),
                                 "every event written before the kill is delivered")
                assert sorted(delivered()) == sorted(written)  # exactly once

                checkpoint = await group.initiate_checkpoint("before-kill", timeout=WAIT)
                assert all(w.checkpoints == ["before-kill"] for w in workers)
                assert sum(len(c.positions) for c in checkpoint.stream_cuts.values()) >= 63
                victim = workers[0]
                written |= await write(writer, range(6, 8))
                await wait_until(changed, lambda: len(victim.events) > 0 and any(
                    s >= 6 for _, s in victim.events), "the victim reads after the checkpoint")
                victim.process.send_signal(signal.SIGKILL)
                await victim.process.wait()
                killed_after = set(victim.events)
                written |= await write(writer, range(8, 10))
            await wait_until(changed, lambda: set(delivered()) >= written,
                             "every event is delivered after the kill")
            everything = delivered()
            assert set(everything) == written  # at least once, nothing else
            duplicates = {e for e in set(everything) if everything.count(e) > 1}
            assert duplicates <= killed_after  # only what the dead reader had read
            for worker in workers:
                assert in_key_order(worker.events)
            survivors = workers[1:]
            assert sum(w.segments for w in survivors) >= 63  # the victim's segments taken

            for worker in survivors:
                assert worker.process.stdin is not None
                worker.process.stdin.close()
            await wait_until(changed, lambda: all(w.exited for w in survivors),
                             "the survivors close")
            assert await group.online_readers() == []
        finally:
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.kill()
                await worker.process.wait()
                await worker.pump

"""Key-value tables through the pool: KeyValueTable get and put operations per second, with one
caller (each operation awaited before the next: latency-bound) and with 64 concurrent callers
(64 tasks on one event loop sharing one ConnectionPool).

The cluster (one segment store and the controller) runs in a child process
(:class:`~pravega_wire.server.ChildCluster`) so that client and server each get a core. The
table has 4 partitions, 16-byte primary keys and 4-byte secondary keys; values are 100 bytes.
A round does ``OPS`` operations in all (spread over the callers); ``extra_info["ops_per_s"]``
is the rate of the median round. Puts are unconditional puts of ``KEYS`` keys rewritten in
turn (the store's compaction keeps the table bounded); gets read those keys.

Run: ``python -m pytest bench/test_bench_kvt.py --benchmark-only -q -p no:cacheprovider
--benchmark-columns=median,mean,stddev,rounds``. Quote medians; the machine is shared.
"""

from __future__ import annotations

import asyncio
import os

import pytest


from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.kvt import (  # noqa: E402
    KeyValueTable, KeyValueTableConfiguration, TableKey,
)
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import ChildCluster  # noqa: E402

OPS = 2_000
KEYS = 256
VALUE = b"v" * 100
ROUNDS = 5
CONFIG = KeyValueTableConfiguration(partition_count=4, primary_key_length=16,
                                    secondary_key_length=4)


class _Env:
    def __init__(self) -> None:
        self.cluster = ChildCluster(1).start()
        self.loop = asyncio.new_event_loop()
        self.pool = ConnectionPool()
        self.keys = [TableKey(b"%016d" % i, b"%04d" % (i % 7)) for i in range(KEYS)]
        self.table = self.run(self._open())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _open(self) -> KeyValueTable:
        self.controller = ControllerClient(self.cluster.controller_uri)
        await self.controller.create_scope("bench")
        name = f"kvt{os.getpid()}"
        await self.controller.create_key_value_table("bench", name, CONFIG)
        table = await KeyValueTable.open(self.controller, self.pool, "bench", name)
        for key in self.keys:  # every key exists; every partition is known as a table
            await table.put(key, VALUE)
        return table

    def close(self) -> None:
        try:
            self.run(self.table.close())
            self.run(self.controller.close())
            self.run(self.pool.close())
        finally:
            self.loop.close()
            self.cluster.stop()


@pytest.fixture(scope="module")
def env():
    if ChildCluster is None:  # pragma: no cover
        pytest.skip("no child cluster")
    environment = _Env()
    if environment.cluster.controller_uri is None:
        environment.close()
        pytest.skip("the embedded controller needs grpcio")
    try:
        yield environment
    finally:
        environment.close()


def _round(env: _Env, operation: str, callers: int):
    table, keys = env.table, env.keys

    async def caller(index: int) -> int:
        done = 0
        for n in range(index, OPS, callers):
            key = keys[n % KEYS]
            if operation == "put":
                await table.put(key, VALUE)
            else:
                entry = await table.get(key)
                assert entry is not None
            done += 1
        return done

    async def go() -> int:
        return sum(await asyncio.gather(*(caller(i) for i in range(callers))))

    return lambda: env.run(go())


@pytest.mark.parametrize("callers", [1, 64])
@pytest.mark.parametrize("operation", ["get", "put"])
def test_kvt_ops(benchmark, env, operation, callers):
    assert benchmark.pedantic(_round(env, operation, callers), rounds=ROUNDS,
                              warmup_rounds=1) == OPS
    benchmark.extra_info["ops_per_s"] = round(OPS / benchmark.stats.stats.median)

"""Table segments of the embedded segment store, in process (no sockets): what a table command
costs the store once decoded.

- ``update``: one unconditional update of a 100-byte value in a table of 10 000 keys (the
  reader-group pattern: the same few keys rewritten), compaction included as it comes;
- ``iterate``: one ReadTableEntries page of 100 entries, from a continuation token;
- ``delta``: one ReadTableEntriesDelta page of 100 entries from the middle of the table;
- ``rebuild``: recovering the index of a 10 000-key table from its bytes.

Run: ``python -m pytest bench/test_bench_tables.py -p no:cacheprovider --benchmark-only``.
Quote medians (the machine is shared and noisy).
"""

from __future__ import annotations

import itertools

import pytest

from pravega_wire.server.storage import TABLE, Storage
from pravega_wire.server.tables import NO_VERSION, Table

pytestmark = pytest.mark.benchmark(min_time=100e-6, warmup=True)
KEYS = 10_000


def size(entry) -> int:
    return 16 + len(entry.key) + len(entry.value)


@pytest.fixture(scope="module")
def filled():
    storage = Storage()
    segment = storage.create("scope/_tables/bench", TABLE)
    for start in range(0, KEYS, 100):
        storage.table_update(segment, [(b"key-%06d" % i, b"v" * 100, NO_VERSION)
                                       for i in range(start, start + 100)])
    return storage, segment


def test_update(benchmark, filled):
    storage, segment = filled
    keys = itertools.cycle([b"key-%06d" % i for i in range(8)])
    benchmark(lambda: storage.table_update(segment, [(next(keys), b"w" * 100, NO_VERSION)]))
    assert segment.length - segment.start_offset < 8 * 1024 * 1024  # compaction kept it bounded


def test_iterate(benchmark, filled):
    _storage, segment = filled
    _page, token = segment.table.iterate(b"", b"", b"", 100, 1 << 21, size)
    page, _token = benchmark(segment.table.iterate, token, b"", b"", 100, 1 << 21, size)
    assert len(page) == 100


def test_delta(benchmark, filled):
    _storage, segment = filled
    middle = segment.table.get([b"key-%06d" % (KEYS // 2)])[0].version
    entries, *_rest = benchmark(segment.table.delta, segment.read_exact, segment.start_offset,
                                segment.length, middle, 100, 1 << 21, size)
    assert len(entries) == 100


def test_rebuild(benchmark, filled):
    _storage, segment = filled
    table = Table()
    benchmark(table.rebuild, segment.read_exact, segment.start_offset, segment.length)
    assert table.entry_count == KEYS

"""Which partition of a key-value table holds a key, as Java's client decides it
(``KeyValueTableSegments.getSegmentForKey``): Guava's ``murmur3_128`` of the primary key's bytes
seeded with ``"KeyValueTableRouter".hashCode()``, the first 64 bits turned into a position in
[0, 1) as ``HashHelper.longToDoubleFraction`` does, the partition with the smallest upper bound
at or above it. Both hash twins; pinned vectors."""

from __future__ import annotations

import pytest

from pravega_wire.client.kvt import KVT_ROUTER_SEED, java_string_hash, key_position
from pravega_wire.routing import ROUTING_KEY_SEED, KeyRanges

from conftest import TWINS, load_twin

# (primary key, position, partition index for 2, 3, 4 and 16 partitions). Computed from Java's
# algorithm as its sources state it (HashHelper.seededWith("KeyValueTableRouter"), Guava's
# Murmur3_128Hasher whose int seed is sign-extended into both 64-bit halves of the state).
VECTORS = [
    (b"", 0.42352702020022215, (0, 1, 1, 6)),
    (b"a", 0.6272098046731807, (1, 1, 2, 10)),
    (b"\x00\x00\x00\x01", 0.7869216576677149, (1, 2, 3, 12)),
    (b"key-0001", 0.6741219186027629, (1, 2, 2, 10)),
    (b"0123456789abcdef", 0.3339020757249709, (0, 1, 1, 5)),
    (b"0123456789abcdefXYZ", 0.017068146933051587, (0, 0, 0, 0)),
    (bytes(range(32)), 0.283401241263862, (0, 0, 1, 4)),
]


class _Range:
    def __init__(self, index: int, count: int):
        self.index, self.max_key = index, 1.0 if index == count - 1 else (index + 1) / count


@pytest.fixture(params=TWINS)
def hasher(request):
    return load_twin("_hash", request.param)


def test_the_seeds_are_java_string_hash_codes():
    assert java_string_hash("KeyValueTableRouter") == KVT_ROUTER_SEED == -2020233499
    assert java_string_hash("EventRouter") == ROUTING_KEY_SEED  # the routing-key seed
    assert java_string_hash("") == 0
    assert java_string_hash("\U0001F600") == 0xD83D * 31 + 0xDE00  # UTF-16 code units


@pytest.mark.parametrize("key, position, partitions", VECTORS)
def test_partition_vectors(hasher, key, position, partitions):
    assert hasher.hash_bytes_to_range(key, KVT_ROUTER_SEED) == position
    assert hasher.hash_bytes_to_range(bytearray(key), KVT_ROUTER_SEED) == position
    assert key_position(key) == position
    for count, expected in zip((2, 3, 4, 16), partitions):
        ranges = KeyRanges([_Range(i, count) for i in range(count)])
        assert ranges.segments[ranges.index_of(position)].index == expected


def test_a_negative_seed_is_sign_extended_as_guava_does(hasher):
    """For a seed >= 0 the position is the reference MurmurHash3's; for a negative one (the
    KVT seed) Guava's state differs from the reference's zero-extended seed."""
    for key in (b"", b"abc", bytes(range(40))):
        for seed in (0, 1, ROUTING_KEY_SEED, 2 ** 31 - 1):
            h1, _ = hasher.murmur3_x64_128(key, seed)
            assert hasher.hash_bytes_to_range(key, seed) == (h1 >> 12) / 2 ** 52
        h1, _ = hasher.murmur3_x64_128(key, KVT_ROUTER_SEED & 0xFFFFFFFF)
        assert hasher.hash_bytes_to_range(key, KVT_ROUTER_SEED) != (h1 >> 12) / 2 ** 52


def test_both_twins_agree_and_refuse_seeds_that_are_not_java_ints():
    pure, compiled = (load_twin("_hash", which) for which in ("pure", "compiled"))
    for n in range(70):
        data = bytes((i * 37 + n) & 0xFF for i in range(n))
        for seed in (KVT_ROUTER_SEED, -1, -(2 ** 31), 7):
            assert pure.hash_bytes_to_range(data, seed) == compiled.hash_bytes_to_range(data,
                                                                                        seed)
    for twin in (pure, compiled):
        for seed in (2 ** 31, -(2 ** 31) - 1):
            with pytest.raises(ValueError):
                twin.hash_bytes_to_range(b"k", seed)

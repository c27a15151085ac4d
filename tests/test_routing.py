"""The routing-key hash in both twins (``pravega_wire._hash`` compiled, ``_hash_py`` pure): the
same positions as Pravega's Java and Rust clients, the same results from both twins for every
kind of key, and the facade :mod:`pravega_wire.routing` (also exported by the controller
client)."""

from __future__ import annotations

import importlib
import random

import pytest

from pravega_wire import routing
from pravega_wire.client import controller
from pravega_wire.codec import pure_requested

from conftest import TWINS, load_twin

# Two of Guava's Murmur3Hash128Test known values (seed, h1, h2, input); tests/test_controller.py
# pins the rest through the controller's exports (when grpc is installed).
MURMUR3_VECTORS = [
    (1, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, b"hello"),
    (0, 0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347, b"The quick brown fox jumps over the lazy dog"),
]


@pytest.fixture(params=TWINS)
def hasher(request):
    return load_twin("_hash", request.param)


@pytest.fixture
def pure():
    return importlib.import_module("pravega_wire._hash_py")


@pytest.mark.parametrize("seed, h1, h2, data", MURMUR3_VECTORS)
def test_murmur3_reference_values(hasher, seed, h1, h2, data):
    assert hasher.murmur3_x64_128(data, seed) == (h1, h2)
    assert hasher.murmur3_x64_128(bytearray(data), seed) == (h1, h2)
    assert hasher.murmur3_x64_128(memoryview(data), seed) == (h1, h2)


def test_murmur3_empty_and_every_tail_length(hasher, pure):
    assert hasher.murmur3_x64_128(b"", 0) == (0, 0)
    data = bytes(range(256)) * 2
    for n in range(70):
        for seed in (0, 1, 0xFFFFFFFF, 1 << 40 | 9):  # only the low 32 bits of a seed count
            assert hasher.murmur3_x64_128(data[:n], seed) == pure.murmur3_x64_128(data[:n], seed)
    assert hasher.murmur3_x64_128(b"abc", 1 << 40 | 9) == hasher.murmur3_x64_128(b"abc", 9)


def test_routing_key_positions_of_java_and_rust(hasher):
    # The Rust client's own unit test (shared/src/lib.rs, test_hash): "hello" -> 0.658716230571337.
    assert hasher.hash_routing_key("hello") == 0.658716230571337
    assert hasher.hash_routing_key("hello", rust_compatible=True) == 0.658716230571337
    assert hasher.ROUTING_KEY_SEED == 1741865571  # "EventRouter".hashCode()
    # By definition: murmur3 of the UTF-16LE code units, (h1 >> 12) / 2**52.
    for key in ("", "key-7", "clé", "\U0001F600", "\ud800x", "k" * 500):
        units = key.encode("utf-16-le", "surrogatepass")
        h1, _ = hasher.murmur3_x64_128(units, 1741865571)
        assert hasher.hash_routing_key(key) == (h1 >> 12) / 2 ** 52
        # Rust hashes as many code units as the key has UTF-8 bytes, zero-padded.
        padded = units.ljust(2 * len(key.encode("utf-8", "surrogatepass")), b"\0")
        h1, _ = hasher.murmur3_x64_128(padded, 1741865571)
        assert hasher.hash_routing_key(key, rust_compatible=True) == (h1 >> 12) / 2 ** 52
    assert hasher.hash_routing_key("clé") != hasher.hash_routing_key("clé", rust_compatible=True)


def _random_key(rnd: random.Random) -> str:
    ranges = [(0x20, 0x7F), (0x80, 0x800), (0x800, 0xD800), (0xD800, 0xE000), (0xE000, 0x10000),
              (0x10000, 0x110000)]
    length = rnd.choice([rnd.randrange(0, 20), rnd.randrange(100, 400)])  # around 256 units
    return "".join(chr(rnd.randrange(*rnd.choice(ranges))) for _ in range(length))


def test_twins_agree_on_every_kind_of_key(hasher, pure):
    # ASCII, 2- and 3-byte UTF-8, lone surrogates, astral characters (surrogate pairs), keys
    # short and longer than the compiled twin's stack buffer, both placements.
    rnd = random.Random(2026)
    for _ in range(1500):
        key = _random_key(rnd)
        for rust in (False, True):
            assert hasher.hash_routing_key(key, rust_compatible=rust) == \
                pure.hash_routing_key(key, rust_compatible=rust), (key, rust)
    class Key(str):
        pass
    assert hasher.hash_routing_key(Key("hello")) == 0.658716230571337


def test_routing_key_must_be_a_str(hasher):
    for bad in (b"hello", None, 7):
        with pytest.raises(TypeError):
            hasher.hash_routing_key(bad)
    with pytest.raises(TypeError):
        hasher.hash_routing_key("k", True)  # rust_compatible is keyword-only


def test_facade_picks_a_twin_and_the_controller_reexports_it():
    assert routing.IMPLEMENTATION == ("pure" if pure_requested() else "compiled")
    assert routing.impl.__name__ == ("pravega_wire._hash_py" if pure_requested()
                                     else "pravega_wire._hash")
    for name in ("ROUTING_KEY_SEED", "murmur3_x64_128", "hash_routing_key", "segment_for_key"):
        assert getattr(controller, name) is getattr(routing, name)
        assert name in controller.__all__


class _Range:
    def __init__(self, segment_id: int, max_key: float):
        self.segment_id, self.max_key = segment_id, max_key


def test_key_ranges_place_like_segment_for_key():
    ranges = [_Range(i, (i + 1) / 8) for i in (5, 2, 7, 0, 1, 3, 6, 4)]
    table = routing.KeyRanges(ranges)
    assert [s.segment_id for s in table.segments] == list(range(8))
    for i in range(300):
        key = f"routing-{i}"
        position = routing.hash_routing_key(key)
        chosen = table.segment_for(key)
        assert chosen is routing.segment_for_key(key, ranges)
        assert chosen.max_key >= position and (chosen.segment_id == 0
                                               or table.max_keys[chosen.segment_id - 1] < position)
    assert table.segment_for(None, rand=lambda: 0.125).segment_id == 0  # on a bound
    assert table.segment_for(None, rand=lambda: 0.99).segment_id == 7
    assert table.index_of(2.0) == 7  # above every range: the last one
    with pytest.raises(ValueError):
        routing.KeyRanges([])

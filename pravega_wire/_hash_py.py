"""The routing-key hash, pure-Python twin of ``pravega_wire._hash`` (same names, same results).

Pravega's clients place an event by the MurmurHash3 x64 128 (Guava's ``murmur3_128``) of its
routing key's UTF-16LE code units with the seed :data:`ROUTING_KEY_SEED`: the first 64 bits
``h`` give the position ``(h >> 12) / 2**52`` in ``[0, 1)`` (the mantissa of a double in
[1, 2), minus 1.0), as Java's ``HashHelper`` (``longToDoubleFraction``) and the Rust client do.
:mod:`pravega_wire.routing` picks this twin or the compiled one at import.
"""

from __future__ import annotations

import struct

__all__ = ["IMPLEMENTATION", "ROUTING_KEY_SEED", "murmur3_x64_128", "hash_routing_key",
           "hash_bytes_to_range"]

IMPLEMENTATION = "pure"

#: Seed of the routing-key hash: Java's ``"EventRouter".hashCode()``, used by Java and Rust.
ROUTING_KEY_SEED = 1741865571

_MASK64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_BLOCKS = struct.Struct("<QQ").iter_unpack


def _rotl64(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64


def _fmix64(value: int) -> int:
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _MASK64
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _MASK64
    return value ^ (value >> 33)


def _mix_k1(k1: int) -> int:
    return (_rotl64((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64


def _mix_k2(k2: int) -> int:
    return (_rotl64((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3 x64 128-bit of ``data`` (bytes-like) as the two unsigned 64-bit halves
    ``(h1, h2)``; ``h1`` is what Guava's ``asLong()`` and the Rust ``murmur3`` crate's first
    value return. Only the low 32 bits of ``seed`` count, as in the reference."""
    return _murmur3(bytes(data), seed & 0xFFFFFFFF)


def _murmur3(data: bytes, state: int) -> tuple[int, int]:
    """MurmurHash3 x64 128 with both 64-bit halves of the state starting at ``state``."""
    length = len(data)
    h1 = h2 = state
    body = length - length % 16
    for k1, k2 in _BLOCKS(data[:body]):
        h1 ^= _mix_k1(k1)
        h1 = (_rotl64(h1, 27) + h2) & _MASK64
        h1 = (h1 * 5 + 0x52DCE729) & _MASK64
        h2 ^= _mix_k2(k2)
        h2 = (_rotl64(h2, 31) + h1) & _MASK64
        h2 = (h2 * 5 + 0x38495AB5) & _MASK64
    tail = data[body:]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1, h2 = _fmix64(h1), _fmix64(h2)
    h1 = (h1 + h2) & _MASK64
    return h1, (h2 + h1) & _MASK64


def hash_routing_key(routing_key: str, *, rust_compatible: bool = False) -> float:
    """The position in ``[0, 1)`` of a routing key, as Pravega's clients compute it: murmur3
    x64 128 (seed :data:`ROUTING_KEY_SEED`) of the key's UTF-16LE code units (lone surrogates
    included as they are); the first 64 bits ``h`` give ``(h >> 12) / 2**52``.

    Java hashes exactly the code units. The Rust client hashes a buffer of as many code units
    as the key has UTF-8 bytes, zero-padded, so the two differ for non-ASCII keys:
    ``rust_compatible=True`` reproduces Rust's placement."""
    if not isinstance(routing_key, str):
        raise TypeError(f"routing_key must be a str, not {type(routing_key).__name__}")
    units = routing_key.encode("utf-16-le", "surrogatepass")
    if rust_compatible:
        units = units.ljust(2 * len(routing_key.encode("utf-8", "surrogatepass")), b"\0")
    h1, _ = murmur3_x64_128(units, ROUTING_KEY_SEED)
    return (h1 >> 12) / 4503599627370496.0


def hash_bytes_to_range(data: bytes, seed: int) -> float:
    """The position in ``[0, 1)`` of ``data`` (bytes-like) as Java's
    ``HashHelper.seededWith(name).hashToRange(ByteBuffer)`` computes it, ``seed`` being
    ``name.hashCode()`` (a Java ``int``): Guava's ``murmur3_128(seed)`` of the bytes, whose
    state starts at the seed *sign-extended* to 64 bits (Guava issue 3493: for a negative seed
    this is not the reference MurmurHash3), then ``(h1 >> 12) / 2**52`` as for routing keys.
    Key-value tables place their keys with it."""
    if not -(1 << 31) <= seed < (1 << 31):
        raise ValueError(f"seed must be a Java int, not {seed!r}")
    h1, _ = _murmur3(bytes(data), seed & _MASK64)
    return (h1 >> 12) / 4503599627370496.0

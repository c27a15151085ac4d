"""Type stubs of the compiled routing-key hash (the pure twin is ``_hash_py``)."""

IMPLEMENTATION: str
ROUTING_KEY_SEED: int

def murmur3_x64_128(data: bytes | bytearray | memoryview, seed: int = ...) -> tuple[int, int]: ...
def hash_routing_key(routing_key: str, *, rust_compatible: bool = ...) -> float: ...

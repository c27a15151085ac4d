"""Which segment store owns a segment: shared by the embedded controller (getURI) and the
embedded segment stores (WrongHost), so that both always agree.

As in Pravega, a segment belongs to a *segment container* chosen by hashing its name, and each
container is hosted by one store. Transaction and transient segments hash as their parent
segment, so that merging them into the parent stays inside one container (and one store).
"""

from __future__ import annotations

import zlib

from pravega_wire.naming import primary_segment_name

__all__ = ["DEFAULT_CONTAINER_COUNT", "primary_segment_name", "container_of", "store_index_of"]

#: Containers per embedded cluster (Pravega's default for a standalone cluster is 4).
DEFAULT_CONTAINER_COUNT = 16

def container_of(segment: str, container_count: int = DEFAULT_CONTAINER_COUNT) -> int:
    """The container that holds ``segment``: a stable hash of its primary name."""
    if container_count <= 0:
        raise ValueError("container_count must be positive")
    name = primary_segment_name(segment).encode("utf-8", "surrogatepass")
    return zlib.crc32(name) % container_count


def store_index_of(segment: str, store_count: int,
                   container_count: int = DEFAULT_CONTAINER_COUNT) -> int:
    """Index (0-based) of the store that owns ``segment`` among ``store_count`` stores:
    container ``c`` lives on store ``c % store_count``."""
    if store_count <= 0:
        raise ValueError("store_count must be positive")
    return container_of(segment, container_count) % store_count

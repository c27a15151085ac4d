"""Segment name suffixes, transaction ids and transaction segment names, shared by the
clients and the embedded server (neither imports the other).

A transaction id is a 128-bit UUID sent as ``TxnId{highBits, lowBits}``, two signed 64-bit
halves; the top 32 bits of ``highBits`` are the epoch the transaction was created in. Its
segments are named as Pravega's ``NameUtils.getTransactionNameFromId`` names them:
``<segment>#transaction.<32 lower-case hex digits of the UUID>``.
"""

from __future__ import annotations

import uuid

__all__ = ["TRANSACTION_MARKER", "TRANSIENT_MARKER", "KVTABLE_SUFFIX", "primary_segment_name", "txn_id_from_bits",
           "txn_id_bits", "txn_epoch", "transaction_segment_name"]

#: What separates a segment's name from its transaction's id in a transaction segment name.
TRANSACTION_MARKER = "#transaction."
#: What separates a segment's name from the rest in a transient segment's name.
TRANSIENT_MARKER = "#transient."
#: A key-value table's partitions are table segments named like the segments of a stream
#: ``<table>_kvtable`` (Java's ``NameUtils.getQualifiedTableSegmentName``):
#: ``<scope>/<table>_kvtable/<number>.#epoch.<epoch>``.
KVTABLE_SUFFIX = "_kvtable"


def primary_segment_name(segment: str) -> str:
    """The parent segment's name for a transaction or transient segment; any other name as
    it is."""
    for marker in (TRANSACTION_MARKER, TRANSIENT_MARKER):
        cut = segment.find(marker)
        if cut >= 0:
            segment = segment[:cut]
    return segment

_MASK64 = (1 << 64) - 1


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def txn_id_from_bits(high: int, low: int) -> uuid.UUID:
    """The UUID of ``TxnId{highBits=high, lowBits=low}`` (either half may be negative)."""
    return uuid.UUID(int=((high & _MASK64) << 64) | (low & _MASK64))


def txn_id_bits(txn_id: uuid.UUID) -> tuple[int, int]:
    """``(highBits, lowBits)`` of a transaction id, as the signed int64 values protobuf wants."""
    return _signed64(txn_id.int >> 64), _signed64(txn_id.int & _MASK64)


def txn_epoch(txn_id: uuid.UUID) -> int:
    """The epoch a transaction was created in: the top 32 bits of its id."""
    return txn_id.int >> 96


def transaction_segment_name(segment: str, txn_id: uuid.UUID) -> str:
    """The name of transaction ``txn_id``'s segment for the qualified segment ``segment``."""
    return f"{segment}{TRANSACTION_MARKER}{txn_id.hex}"

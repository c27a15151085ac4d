"""Loading the Java-made vectors (tests/data, copied from the project's shared vectors) and
turning their JSON ``fields`` into command objects."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from pravega_wire import commands as C

DATA = Path(__file__).parent / "data"


def load(name: str):
    with open(DATA / name, encoding="utf-8") as f:
        return json.load(f)


VECTORS = load("vectors.json")
MALFORMED = load("malformed.json")
STREAMS = load("encoder_streams.json")
SCHEMA = {v["class"]: v for v in VECTORS["schema"].values()}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _key(d):
    return C.TableKey(bytes.fromhex(d["data"]), d["keyVersion"])


def _value(d, java_type):
    if d is None:
        return None
    if java_type == "ByteBuf":
        return bytes.fromhex(d)
    if java_type == "UUID":
        return uuid.UUID(d)
    if java_type == "Event":
        return C.Event(bytes.fromhex(d["data"]))
    if java_type == "TableEntries":
        return C.TableEntries([(_key(e["key"]), C.TableValue(bytes.fromhex(e["value"]["data"])))
                               for e in d["entries"]])
    if java_type == "List<TableKey>":
        return [_key(k) for k in d]
    if java_type == "List<ChunkInfo>":
        return [C.ChunkInfo(c["lengthInMetadata"], c["lengthInStorage"], c["startOffset"],
                            c["chunkName"], c["existsInStorage"]) for c in d]
    if java_type == "List<ConditionalAttributeUpdate>":
        return [C.ConditionalAttributeUpdate(uuid.UUID(c["attributeId"]), c["attributeUpdateType"],
                                             c["newValue"], c["oldValue"]) for c in d]
    if java_type == "TableIteratorArgs":
        return C.TableIteratorArgs(*(bytes.fromhex(d[k]) for k in
                                     ("continuationToken", "prefixFilter", "fromKey", "toKey")))
    return d  # ints, bools, strings, lists of strings / longs, error codes


def command(class_name: str, fields: dict):
    """The command a vector's ``fields`` describe (Java names → snake_case, hex → bytes)."""
    cls = getattr(C, class_name)
    types = SCHEMA[class_name]["fields"]
    return cls(**{snake(k): _value(v, types[k]) for k, v in fields.items()})

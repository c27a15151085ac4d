"""Key-value tables (pravega_wire.client.kvt) on the embedded cluster: the controller's KVT
RPCs, the table's partitions as fixed-key-length table segments, put / put_if_absent / replace
/ remove / get / get_all / exists, atomic batches, typed errors, paged iteration with
continuation, and the pool's table-request path."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("grpc", reason="the controller needs the grpc extra")

from pravega_wire import commands as C  # noqa: E402
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, InvalidNameError, ScopeNotFoundError,
)
from pravega_wire.client.kvt import (  # noqa: E402
    BadKeyVersionError, Insert, KeyLengthError, KeyValueTable, KeyValueTableConfiguration,
    KeyValueTableManager, KeyValueTableNotFoundError, NoSuchKeyError, Put, Remove, TableKey,
    Version,
)
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402

CONFIG = KeyValueTableConfiguration(partition_count=3, primary_key_length=4,
                                    secondary_key_length=2)


def pk(n: int) -> bytes:
    return n.to_bytes(4, "big")


def sk(n: int) -> bytes:
    return n.to_bytes(2, "big")


@pytest.mark.asyncio
async def test_manager_creates_lists_describes_and_deletes_tables():
    async with EmbeddedCluster(2) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl:
        manager = KeyValueTableManager(ctl)
        with pytest.raises(ScopeNotFoundError):
            await manager.create_key_value_table("sc", "t", CONFIG)
        await ctl.create_scope("sc")
        assert await manager.create_key_value_table("sc", "t", CONFIG)
        assert not await manager.create_key_value_table("sc", "t", CONFIG)
        assert await manager.create_key_value_table(
            "sc", "u", KeyValueTableConfiguration(1, 8))
        with pytest.raises(InvalidNameError):
            await manager.create_key_value_table("sc", "bad/name", CONFIG)
        with pytest.raises(ControllerError) as refused:  # keys longer than a table segment's
            await manager.create_key_value_table("sc", "big",
                                                 KeyValueTableConfiguration(1, 200, 57))
        assert refused.value.status == "INVALID_ARGUMENT"
        assert await manager.list_key_value_tables("sc") == ["t", "u"]
        assert await manager.get_key_value_table_configuration("sc", "t") == CONFIG
        with pytest.raises(KeyValueTableNotFoundError):
            await manager.get_key_value_table_configuration("sc", "nope")
        with pytest.raises(KeyValueTableNotFoundError):
            await ctl.get_key_value_table_segments("sc", "nope")

        # the partitions: fixed-key-length table segments named as Java's NameUtils names them
        segments = await ctl.get_key_value_table_segments("sc", "t")
        assert [(s.segment_id, s.min_key, s.max_key) for s in segments] == [
            (0, 0.0, 1 / 3), (1, 1 / 3, 2 / 3), (2, 2 / 3, 1.0)]
        for number in range(3):
            name = f"sc/t_kvtable/{number}.#epoch.0"
            stored = cluster.store_for(name).storage.get(name)
            assert stored is not None and stored.table is not None
            assert stored.table.key_length == 6
        with pytest.raises(ControllerError) as not_empty:  # a scope with tables stays
            await ctl.delete_scope("sc")
        assert not_empty.value.status == "SCOPE_NOT_EMPTY"

        assert await manager.delete_key_value_table("sc", "t")
        assert not await manager.delete_key_value_table("sc", "t")
        assert cluster.store_for("sc/t_kvtable/0.#epoch.0").storage.get(
            "sc/t_kvtable/0.#epoch.0") is None
        assert await manager.list_key_value_tables("sc") == ["u"]

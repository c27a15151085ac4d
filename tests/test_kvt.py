"""Key-value tables (pravega_wire.client.kvt) on the embedded cluster: the controller's KVT
RPCs, the table's partitions as fixed-key-length table segments, put / put_if_absent / replace
/ remove / get / get_all / exists, atomic batches, typed errors, paged iteration with
continuation, and the pool's table-request path."""

from __future__ import annotations

import asyncio
import contextlib

import pytest


from pravega_wire import commands as C  # noqa: E402
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, InvalidNameError, ScopeNotFoundError,
)
from pravega_wire.client.kvt import (  # noqa: E402
    BadKeyVersionError, Insert, KeyLengthError, KeyValueTable, KeyValueTableConfiguration,
    NO_VERSION, NOT_EXISTS, KeyValueTableManager, KeyValueTableNotFoundError, NoSuchKeyError,
    Put, Remove, TableKey, Version,
)
from pravega_wire.errors import AuthenticationError  # noqa: E402
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


async def open_table(cluster, ctl, pool, name="t", config=CONFIG, **options):
    await ctl.create_scope("sc")
    assert await ctl.create_key_value_table("sc", name, config)
    return await KeyValueTable.open(ctl, pool, "sc", name, **options)


@contextlib.asynccontextmanager
async def table_on_cluster(stores: int, config=CONFIG):
    """A cluster of ``stores`` stores, a controller client, a pool and the open table sc/t."""
    async with EmbeddedCluster(stores) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, ConnectionPool() as pool:
        async with await open_table(cluster, ctl, pool, config=config) as table:
            yield cluster, ctl, pool, table


@pytest.mark.asyncio
async def test_put_get_replace_remove_with_versions():
    async with table_on_cluster(2) as (cluster, ctl, pool, table):
        key = TableKey(pk(1), sk(7))
        assert await table.get(key) is None
        assert not await table.exists(key)
        v1 = await table.put(key, b"one")
        assert v1.segment_id == table.partition_for(pk(1)).segment_id
        # stored as Java's client stores it: key = primary + secondary, in the partition
        # the primary key's hash picks, at the version the store gave it
        for number in range(3):
            name = f"sc/t_kvtable/{number}.#epoch.0"
            [found] = cluster.store_for(name).storage.get(name).table.get([pk(1) + sk(7)])
            if number == v1.segment_id:
                assert found is not None and found.value == b"one"
                assert found.version == v1.segment_version
            else:
                assert found is None
        entry = await table.get(key)
        assert entry is not None and entry.key == key and entry.value == b"one"
        assert entry.version == v1
        assert await table.exists(key)
        assert await table.exists((pk(1), sk(7)))  # a (primary, secondary) tuple

        with pytest.raises(BadKeyVersionError):
            await table.put_if_absent(key, b"again")
        v2 = await table.replace(key, b"two", v1)
        assert v2.segment_version > v1.segment_version
        with pytest.raises(BadKeyVersionError):
            await table.replace(key, b"stale", v1)
        with pytest.raises(BadKeyVersionError):
            await table.remove(key, v1)
        assert (await table.get(key)).value == b"two"

        missing = TableKey(pk(2), sk(0))
        with pytest.raises(NoSuchKeyError):
            await table.replace(missing, b"x", Version(
                table.partition_for(pk(2)).segment_id, 5))
        with pytest.raises(NoSuchKeyError):
            await table.remove(missing, Version(table.partition_for(pk(2)).segment_id, 5))
        await table.remove(missing)  # unconditional: nothing to remove is fine
        v3 = await table.put_if_absent(missing, b"new")
        assert (await table.get(missing)).version == v3

        await table.remove(key, v2)
        assert await table.get(key) is None and not await table.exists(key)
        assert [e and e.value for e in await table.get_all([missing, key, missing])] == [
            b"new", None, b"new"]


@pytest.mark.asyncio
async def test_wrong_key_lengths_and_foreign_versions_are_refused_before_sending():
    async with table_on_cluster(1) as (cluster, ctl, pool, table):
        for bad in (TableKey(pk(1)[:3], sk(0)), TableKey(pk(1), b"\x00"),
                    TableKey(pk(1) + b"\x00", sk(0))):
            with pytest.raises(KeyLengthError):
                await table.put(bad, b"v")
            with pytest.raises(KeyLengthError):
                await table.get(bad)
        with pytest.raises(KeyLengthError):
            await table.put(pk(1), b"v")  # bytes alone: only for tables without secondary
        with pytest.raises(TypeError):
            await table.put("text", b"v")
        other = next(p for p in table.partitions
                     if p.segment_id != table.partition_for(pk(1)).segment_id)
        with pytest.raises(BadKeyVersionError):
            await table.replace(TableKey(pk(1), sk(0)), b"v", Version(other.segment_id, 0))
        # the table still works on the same connections: nothing reached the store
        assert await table.put(TableKey(pk(1), sk(0)), b"ok")
        assert (await table.get(TableKey(pk(1), sk(0)))).value == b"ok"


@pytest.mark.asyncio
async def test_a_batch_with_one_primary_key_is_atomic():
    async with table_on_cluster(2) as (cluster, ctl, pool, table):
        a, b, c = (TableKey(pk(9), sk(i)) for i in range(3))
        va, vb = await table.update([Put(a, b"a"), Insert(b, b"b")])
        assert va.segment_id == vb.segment_id and vb.segment_version > va.segment_version
        with pytest.raises(BadKeyVersionError):  # b exists: nothing of the batch applies
            await table.update([Put(a, b"a2", va), Insert(c, b"c"), Insert(b, b"b2")])
        assert [e and e.value for e in await table.get_all([a, b, c])] == [b"a", b"b", None]
        with pytest.raises(NoSuchKeyError):
            await table.update([Remove(a), Remove(c, Version(va.segment_id, 1))])
        assert (await table.get(a)).value == b"a"
        assert await table.update([Remove(a, va), Remove(b)]) == []
        assert await table.get_all([a, b]) == [None, None]
        with pytest.raises(ValueError):
            await table.update([Put(a, b"x"), Put(TableKey(pk(10), sk(0)), b"y")])
        with pytest.raises(ValueError):
            await table.update([Put(a, b"x"), Remove(b)])
        assert await table.update([]) == []


@pytest.mark.asyncio
async def test_iteration_pages_in_key_order_and_resumes_from_a_token():
    config = KeyValueTableConfiguration(partition_count=4, primary_key_length=2,
                                        secondary_key_length=1)
    async with table_on_cluster(2, config=config) as (cluster, ctl, pool, table):
        written = {}
        for p in range(12):
            primary = p.to_bytes(2, "big")
            versions = await table.update([Put((primary, bytes([s])), bytes([p, s]))
                                           for s in range(5)])
            for s, version in enumerate(versions):
                written[TableKey(primary, bytes([s]))] = version
        assert len({table.partition_for(k.primary_key).segment_id for k in written}) > 1

        pages = [page async for page in table.iterator(7).all().entries()]
        entries = [e for page in pages for e in page.items]
        assert {e.key: e.version for e in entries} == written
        assert all(e.value == e.key.primary_key[1:] + e.key.secondary_key for e in entries)
        assert all(len(page.items) <= 7 for page in pages)
        assert [k async for page in table.iterator(7).all().keys(pages[-1].token)
                for k in page.items] == []  # nothing after the last page
        by_partition: dict[int, list[bytes]] = {}
        for e in entries:  # partition after partition, key order within each
            by_partition.setdefault(e.version.segment_id, []).append(
                e.key.primary_key + e.key.secondary_key)
        assert list(by_partition) == sorted(by_partition)
        assert all(keys == sorted(keys) for keys in by_partition.values())

        # resume after the third page: the same items as the rest of the pages
        rest = [k async for page in table.iterator(7).all().keys(pages[2].token)
                for k in page.items]
        assert rest == [e.key for page in pages[3:] for e in page.items]

        one = [k async for page in table.iterator(2).for_primary_key(pk(5)[2:]).keys()
               for k in page.items]
        assert one == [TableKey(b"\x00\x05", bytes([s])) for s in range(5)]
        some = [k.secondary_key async for page in table.iterator(10).for_primary_key(
            b"\x00\x05", from_secondary=b"\x01", to_secondary=b"\x03").keys()
            for k in page.items]
        assert some == [b"\x01", b"\x02", b"\x03"]
        ranged = sorted([k async for page in table.iterator(3).for_range(
            b"\x00\x03", b"\x00\x04").keys() for k in page.items])
        assert ranged == sorted(k for k in written if k.primary_key in (b"\x00\x03",
                                                                        b"\x00\x04"))
        prefixed = [k async for page in table.iterator().for_prefix(b"\x00").keys()
                    for k in page.items]
        assert len(prefixed) == 60
        assert [k async for page in table.iterator().for_prefix(b"\x01").keys()
                for k in page.items] == []
        with pytest.raises(ValueError):
            [k async for k in table.iterator().all().keys(b"garbage")]


@pytest.mark.asyncio
async def test_a_table_without_secondary_keys_takes_bytes_keys():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        config = KeyValueTableConfiguration(partition_count=2, primary_key_length=8)
        async with await open_table(cluster, ctl, pool, config=config) as table:
            version = await table.put(b"abcdefgh", b"v")
            entry = await table.get(b"abcdefgh")
            assert entry.key == TableKey(b"abcdefgh", b"") and entry.version == version
            assert [k async for page in table.iterator().all().keys() for k in page.items] == [
                TableKey(b"abcdefgh", b"")]


@pytest.mark.asyncio
async def test_64_concurrent_callers_share_the_pool_after_one_probe_per_partition():
    async with EmbeddedCluster(2) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        opened: list[object] = []
        original = pool.open_dedicated_flow

        def counting(*args, **kwargs):
            opened.append(args)
            return original(*args, **kwargs)

        pool.open_dedicated_flow = counting
        async with await open_table(cluster, ctl, pool) as table:
            assert len(opened) == 3  # one probe per partition
            keys = [TableKey(pk(i), sk(i)) for i in range(64)]
            versions = await asyncio.gather(*(table.put(k, bytes([i]))
                                              for i, k in enumerate(keys)))
            got = await asyncio.gather(*(table.get(k) for k in keys))
            assert [(e.value, e.version) for e in got] == [
                (bytes([i]), v) for i, v in enumerate(versions)]
            # one RawClient per store; open() probed each partition once (its first table
            # command on a dedicated connection): it is known as a table segment, so the 64
            # callers' commands all went on the pooled flow
            clients = list(table._client._clients.values())
            assert 1 <= len(clients) <= 2
            assert set().union(*(c._tables for c in clients)) == set(table._segments.values())
            assert len(opened) == 3


@pytest.mark.asyncio
async def test_a_deleted_table_cannot_be_opened():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        table = await open_table(cluster, ctl, pool)
        await table.close()
        assert await ctl.delete_key_value_table("sc", "t")
        with pytest.raises(KeyValueTableNotFoundError):
            await KeyValueTable.open(ctl, pool, "sc", "t")


@pytest.mark.asyncio
async def test_with_auth_the_table_uses_cached_delegation_tokens():
    async with EmbeddedCluster(2, auth=True) as cluster:
        fetched: list[tuple[str, str]] = []

        class CountingController(ControllerClient):
            async def get_delegation_token(self, scope: str, stream: str) -> str:
                fetched.append((scope, stream))
                return await super().get_delegation_token(scope, stream)

        async with CountingController(cluster.controller_uri, auth=("admin", "pw")) as ctl, \
                ConnectionPool() as pool:
            async with await open_table(cluster, ctl, pool, auth=True) as table:
                for i in range(5):
                    await table.put(TableKey(pk(i), sk(i)), b"v")
                assert [(await table.get(TableKey(pk(i), sk(i)))).value
                        for i in range(5)] == [b"v"] * 5
                assert fetched == [("sc", "t_kvtable")]  # one token, cached
            # without tokens the store refuses the table's commands
            async with await KeyValueTable.open(ctl, pool, "sc", "t") as anonymous:
                with pytest.raises(AuthenticationError):
                    await anonymous.get(TableKey(pk(1), sk(1)))


@pytest.mark.asyncio
async def test_a_recursive_scope_delete_deletes_its_tables():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl:
        await ctl.create_scope("sc")
        assert await ctl.create_key_value_table("sc", "t", CONFIG)
        await ctl.delete_scope_recursive("sc")
        assert not await ctl.scope_exists("sc")
        name = "sc/t_kvtable/0.#epoch.0"
        assert cluster.store_for(name).storage.get(name) is None
        await ctl.create_scope("sc")
        assert await ctl.list_key_value_tables("sc") == []


@pytest.mark.asyncio
async def test_java_version_sentinels():
    async with table_on_cluster(1) as (cluster, ctl, pool, table):
        key = TableKey(pk(3), sk(3))
        first = await table.replace(key, b"a", NOT_EXISTS)  # as put_if_absent
        with pytest.raises(BadKeyVersionError):
            await table.replace(key, b"b", NOT_EXISTS)
        with pytest.raises(BadKeyVersionError):
            await table.remove(key, NOT_EXISTS)
        second = await table.replace(key, b"c", NO_VERSION)  # unconditional
        assert second.segment_version > first.segment_version
        await table.remove(key, NO_VERSION)
        assert await table.get(key) is None

"""The controller: generated proto, embedded controller (state model, statuses, auth), the asyncio
controller client, the routing-key hash, and interop with the real Rust client (pravega 0.3.8).

No pytest-asyncio: each test drives its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from pravega_wire._proto import controller_pb2 as pb  # noqa: E402
from pravega_wire._proto import controller_pb2_grpc as pb_grpc  # noqa: E402
from pravega_wire.client import controller as client_module  # noqa: E402
from pravega_wire.client.controller import (  # noqa: E402
    ControllerClient, ControllerError, InvalidNameError, ScopeNotFoundError, SegmentWithRange,
    StreamNotFoundError, hash_routing_key, murmur3_x64_128, parse_segment_name, segment_for_key,
    segment_name,
)
from pravega_wire.errors import (  # noqa: E402
    AuthenticationError, ConnectionClosedError, ConnectionFailedError, PravegaWireError,
    TimeoutError,
)
from pravega_wire.server import controller as server_module  # noqa: E402
from pravega_wire.server.controller import (  # noqa: E402
    EmbeddedController, key_ranges, verify_token,
)
from pravega_wire.server.placement import store_index_of  # noqa: E402
from pravega_wire.server.tokens import issue_token  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
STORES = [("127.0.0.1", 6001), ("127.0.0.1", 6002), ("127.0.0.1", 6003)]


def run(coro):
    """Drive one test coroutine to completion."""
    return asyncio.run(coro)


class RecordingAdmin:
    """A SegmentAdmin that records every call; ``fail`` names an operation that raises, and
    ``delay`` makes ``create_segment`` slow."""

    def __init__(self, fail: str | None = None, delay: float = 0.0):
        self.calls: list[tuple] = []
        self.fail = fail
        self.delay = delay

    async def _record(self, *call):
        if self.fail == call[0]:
            raise OSError(f"store refused {call}")
        self.calls.append(call)

    async def create_segment(self, name):
        await asyncio.sleep(self.delay)
        await self._record("create", name)

    async def seal_segment(self, name):
        await self._record("seal", name)

    async def delete_segment(self, name):
        await self._record("delete", name)

    async def truncate_segment(self, name, offset):
        await self._record("truncate", name, offset)


async def _stub(controller):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{controller.port}")
    return channel, pb_grpc.ControllerServiceStub(channel)


def _info(scope, stream):
    return pb.StreamInfo(scope=scope, stream=stream)


def _config(scope, stream, segments, tags=()):
    return pb.StreamConfig(streamInfo=_info(scope, stream),
                           scalingPolicy=pb.ScalingPolicy(minNumSegments=segments),
                           tags=pb.Tags(tag=list(tags)))


# ---- pure functions --------------------------------------------------------------------------

def test_key_ranges_are_contiguous_and_end_at_one():
    for n in range(1, 201):
        ranges = key_ranges(n)
        assert len(ranges) == n
        assert ranges[0][0] == 0.0
        assert ranges[-1][1] == 1.0
        for i, (low, high) in enumerate(ranges):
            assert low < high
            assert low == i / n
            if i < n - 1:
                assert high == (i + 1) / n == ranges[i + 1][0]
    with pytest.raises(ValueError):
        key_ranges(0)


def test_segment_names_round_trip():
    assert segment_name("sc", "st", 0) == "sc/st/0.#epoch.0"
    assert segment_name("sc", "st", (1 << 32) | 2) == "sc/st/2.#epoch.1"
    assert parse_segment_name("sc/st/2.#epoch.1") == ("sc", "st", (1 << 32) | 2)
    assert parse_segment_name("sc/st/7") == ("sc", "st", 7)
    assert parse_segment_name("st/3.#epoch.0") == ("", "st", 3)
    assert parse_segment_name("sc/rg1_kvtable/0.#epoch.0") == ("sc", "rg1_kvtable", 0)
    txn = "sc/st/0.#epoch.0#transaction.00000000000000010000000000000002"
    assert parse_segment_name(txn) == ("sc", "st", 0)
    assert parse_segment_name("sc/st/1.#epoch.0#transient.ab.cd") == ("sc", "st", 1)
    for bad in ("", "sc", "a/b/c/0", "sc/st/x", "sc//0", "sc/st/1.#epoch.", "sc/st/4294967296"):
        with pytest.raises(ValueError):
            parse_segment_name(bad)


# Guava's Murmur3Hash128Test known values (seed, h1, h2, input), the C++ reference's output.
MURMUR3_VECTORS = [
    (0, 0x629942693E10F867, 0x92DB0B82BAEB5347, b"hell"),
    (1, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, b"hello"),
    (2, 0x8A486B23F422E826, 0xF962A2C58947765F, b"hello "),
    (3, 0x2EA59F466F6BED8C, 0xC610990ACC428A17, b"hello w"),
    (4, 0x79F6305A386C572C, 0x46305AED3483B94E, b"hello wo"),
    (5, 0xC2219D213EC1F1B5, 0xA1D8E2E0A52785BD, b"hello wor"),
    (0, 0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347, b"The quick brown fox jumps over the lazy dog"),
    (0, 0x658CA970FF85269A, 0x43FEE3EAA68E5C3E, b"The quick brown fox jumps over the lazy cog"),
]


@pytest.mark.parametrize("seed, h1, h2, data", MURMUR3_VECTORS)
def test_murmur3_known_values(seed, h1, h2, data):
    assert murmur3_x64_128(data, seed) == (h1, h2)


def test_murmur3_empty_input_and_block_boundaries():
    assert murmur3_x64_128(b"", 0) == (0, 0)
    # Every tail length, 0..16, over two blocks: all distinct and all 64-bit.
    results = {murmur3_x64_128(bytes(range(32 + n)), 7) for n in range(17)}
    assert len(results) == 17
    assert all(0 <= h < 1 << 64 for pair in results for h in pair)


def test_routing_key_hash():
    # The Rust client's own unit test (shared/src/lib.rs test_hash): "hello" -> 0.658716230571337.
    assert hash_routing_key("hello") == 0.658716230571337
    assert hash_routing_key("hello", rust_compatible=True) == 0.658716230571337
    # Derivation by hand: UTF-16LE units, seed 1741865571, (h1 >> 12) / 2**52.
    h1, _ = murmur3_x64_128("key-7".encode("utf-16-le"), 1741865571)
    assert hash_routing_key("key-7") == (h1 >> 12) / 2 ** 52
    # Non-ASCII keys: Rust hashes zero code units up to the UTF-8 length (pitfall 12).
    key = "clé"
    rust_units = key.encode("utf-16-le") + b"\0\0"
    assert hash_routing_key(key, rust_compatible=True) == \
        (murmur3_x64_128(rust_units, 1741865571)[0] >> 12) / 2 ** 52
    assert hash_routing_key(key) != hash_routing_key(key, rust_compatible=True)
    for i in range(200):
        assert 0.0 <= hash_routing_key(f"k{i}") < 1.0


def test_segment_for_key_picks_the_ceiling_of_max_keys():
    ranges = [SegmentWithRange("sc", "st", i, low, high)
              for i, (low, high) in enumerate(key_ranges(4))]
    shuffled = [ranges[2], ranges[0], ranges[3], ranges[1]]
    assert segment_for_key(None, shuffled, rand=lambda: 0.0).segment_id == 0
    assert segment_for_key(None, shuffled, rand=lambda: 0.25).segment_id == 0  # on a bound
    assert segment_for_key(None, shuffled, rand=lambda: 0.2500001).segment_id == 1
    assert segment_for_key(None, shuffled, rand=lambda: 0.99).segment_id == 3
    for i in range(100):
        key = f"routing-{i}"
        position = hash_routing_key(key)
        chosen = segment_for_key(key, shuffled)
        assert chosen.min_key <= position <= chosen.max_key
        assert chosen.segment_id == min(s.segment_id for s in ranges if position <= s.max_key)
    assert segment_for_key("hello", ranges).segment_id == 2  # 0.6587... in [0.5, 0.75)
    with pytest.raises(ValueError):
        segment_for_key("k", [])


def test_segment_records_expose_number_epoch_and_name():
    segment = SegmentWithRange("sc", "st", (3 << 32) | 9, 0.5, 1.0)
    assert (segment.number, segment.epoch, segment.name) == (9, 3, "sc/st/9.#epoch.3")


def test_parse_controller_uri():
    parse = client_module._parse_uri
    assert parse("tcp://127.0.0.1:9090") == (False, "127.0.0.1:9090")
    assert parse("127.0.0.1:1234") == (False, "127.0.0.1:1234")
    assert parse("pravega://host") == (False, "host:9090")
    assert parse("tls://a:1,b:2") == (True, "a:1")
    assert parse("pravegas://[::1]:9090") == (True, "[::1]:9090")
    for bad in ("http://x:1", "tcp://:1", "tcp://x:y", ""):
        with pytest.raises(ValueError):
            parse(bad)


def test_missing_grpc_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(ImportError, match=re.escape("pravega-wire[grpc]")):
        client_module._load_grpc()


# ---- tokens ----------------------------------------------------------------------------------

def _jwt_body(token):
    return base64.b64decode(token.split(".")[1])  # standard alphabet, as the Rust client does


def test_tokens_issue_verify_expire():
    controller = EmbeddedController(STORES, auth=True, token_key=b"k" * 32)
    now = time.time()
    token = controller.issue_token("sc", "st", ttl=60)
    assert len(token.split(".")) == 3
    body = json.loads(_jwt_body(token))
    assert body["scope"] == "sc" and body["stream"] == "st"
    assert now + 59 <= body["exp"] <= now + 61
    assert re.search(r'"exp":\s?(\d+)', _jwt_body(token).decode())  # the Rust client's regex
    assert verify_token(token, b"k" * 32) == "ok"
    assert verify_token(token, b"k" * 32, now=body["exp"]) == "expired"
    assert verify_token(token, b"x" * 32) == "invalid"
    assert verify_token(token, b"k" * 32, segment="sc/st/0.#epoch.0") == "ok"
    assert verify_token(token, b"k" * 32, segment="sc/st/1.#epoch.0#transient.a.b") == "ok"
    assert verify_token(token, b"k" * 32, segment="sc/other/0.#epoch.0") == "invalid"
    header, payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({**body, "exp": body["exp"] + 999}).encode()).decode().rstrip("=")
    assert verify_token(f"{header}.{forged}.{signature}", b"k" * 32) == "invalid"
    for bad in ("", "a.b", "a.b.c", "...", f"{header}.{payload}.{signature}x", token + ".x"):
        assert verify_token(bad, b"k" * 32) == "invalid"


def test_token_body_is_alphabet_neutral_base64():
    controller = EmbeddedController(STORES, auth=True)
    for scope in ("s", "sc", "s>?~c", "??>>~~", "x" * 7):
        for stream in ("t", "st", "a?b", "~~~"):
            body_text = controller.issue_token(scope, stream).split(".")[1]
            assert len(body_text) % 4 == 0 and not set(body_text) & set("-_+/=")
            body = json.loads(base64.b64decode(body_text))
            assert (body["scope"], body["stream"]) == (scope, stream)


# ---- embedded controller over gRPC -----------------------------------------------------------

def test_scope_and_stream_lifecycle_statuses():
    async def main():
        admin = RecordingAdmin()
        async with EmbeddedController(STORES, segment_admin=admin) as controller:
            assert controller.uri == f"tcp://127.0.0.1:{controller.port}"
            channel, stub = await _stub(controller)
            async with channel:
                scope_status = pb.CreateScopeStatus
                assert (await stub.createScope(pb.ScopeInfo(scope="sc"))).status == \
                    scope_status.SUCCESS
                assert (await stub.createScope(pb.ScopeInfo(scope="sc"))).status == \
                    scope_status.SCOPE_EXISTS
                for bad in ("", "a/b", "a b", "x" * 256):
                    assert (await stub.createScope(pb.ScopeInfo(scope=bad))).status == \
                        scope_status.INVALID_SCOPE_NAME

                create = pb.CreateStreamStatus
                assert (await stub.createStream(_config("sc", "st", 3, ["t1"]))).status == \
                    create.SUCCESS
                assert admin.calls == [("create", f"sc/st/{i}.#epoch.0") for i in range(3)]
                assert (await stub.createStream(_config("sc", "st", 3))).status == \
                    create.STREAM_EXISTS
                assert (await stub.createStream(_config("nope", "st", 1))).status == \
                    create.SCOPE_NOT_FOUND
                assert (await stub.createStream(_config("sc", "a/b", 1))).status == \
                    create.INVALID_STREAM_NAME
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stub.createStream(_config("sc", "zero", 0))
                assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT

                current = await stub.getCurrentSegments(_info("sc", "st"))
                assert [r.segmentId.segmentId for r in current.segmentRanges] == [0, 1, 2]
                assert [(r.minKey, r.maxKey) for r in current.segmentRanges] == key_ranges(3)
                assert all(r.segmentId.streamInfo.scope == "sc"
                           and r.segmentId.streamInfo.stream == "st"
                           for r in current.segmentRanges)
                assert current.delegationToken == ""

                head = await stub.getSegments(pb.GetSegmentsRequest(streamInfo=_info("sc", "st")))
                assert [(s.segmentId.segmentId, s.offset) for s in head.segments] == \
                    [(0, 0), (1, 0), (2, 0)]
                assert all(s.segmentId.streamInfo.stream == "st" for s in head.segments)
                follow = await stub.getSegmentsImmediatelyFollowing(
                    pb.SegmentId(streamInfo=_info("sc", "st"), segmentId=1))
                assert list(follow.segments) == [] and follow.delegationToken == ""

                config = await stub.getStreamConfiguration(_info("sc", "st"))
                assert list(config.tags.tag) == ["t1"]
                assert config.scalingPolicy.minNumSegments == 3
                update = pb.UpdateStreamStatus
                assert (await stub.updateStream(_config("sc", "st", 3, ["t2"]))).status == \
                    update.SUCCESS
                assert list((await stub.getStreamConfiguration(_info("sc", "st"))).tags.tag) \
                    == ["t2"]
                assert (await stub.updateStream(_config("sc", "nope", 1))).status == \
                    update.STREAM_NOT_FOUND
                assert (await stub.updateStream(_config("nope", "st", 1))).status == \
                    update.SCOPE_NOT_FOUND

                valid = await stub.isSegmentValid(
                    pb.SegmentId(streamInfo=_info("sc", "st"), segmentId=2))
                assert valid.response
                assert (await stub.checkStreamExists(_info("sc", "st"))).exists
                assert not (await stub.checkStreamExists(_info("sc", "nope"))).exists
                assert (await stub.checkScopeExists(pb.ScopeInfo(scope="sc"))).exists

                delete_scope = pb.DeleteScopeStatus
                assert (await stub.deleteScope(pb.ScopeInfo(scope="sc"))).status == \
                    delete_scope.SCOPE_NOT_EMPTY
                delete = pb.DeleteStreamStatus
                assert (await stub.deleteStream(_info("sc", "st"))).status == \
                    delete.STREAM_NOT_SEALED

                admin.calls.clear()
                assert (await stub.sealStream(_info("sc", "st"))).status == update.SUCCESS
                assert admin.calls == [("seal", f"sc/st/{i}.#epoch.0") for i in range(3)]
                assert (await stub.sealStream(_info("sc", "st"))).status == update.SUCCESS
                assert len(admin.calls) == 3  # sealing again does not touch the stores
                assert (await stub.sealStream(_info("sc", "nope"))).status == \
                    update.STREAM_NOT_FOUND
                assert (await stub.sealStream(_info("nope", "st"))).status == \
                    update.SCOPE_NOT_FOUND
                assert list((await stub.getCurrentSegments(_info("sc", "st"))).segmentRanges) \
                    == []
                assert not (await stub.isSegmentValid(
                    pb.SegmentId(streamInfo=_info("sc", "st"), segmentId=2))).response
                assert (await stub.updateStream(_config("sc", "st", 3))).status == \
                    update.STREAM_SEALED
                head = await stub.getSegments(pb.GetSegmentsRequest(streamInfo=_info("sc", "st")))
                assert len(head.segments) == 3  # a sealed stream is still read from its head

                admin.calls.clear()
                assert (await stub.deleteStream(_info("sc", "st"))).status == delete.SUCCESS
                assert sorted(admin.calls) == [("delete", f"sc/st/{i}.#epoch.0") for i in range(3)]
                assert (await stub.deleteStream(_info("sc", "st"))).status == \
                    delete.STREAM_NOT_FOUND

                # Re-created, the stream continues the numbering (docs/controller.md §4.2).
                assert (await stub.createStream(_config("sc", "st", 2))).status == create.SUCCESS
                current = await stub.getCurrentSegments(_info("sc", "st"))
                assert [r.segmentId.segmentId for r in current.segmentRanges] == [3, 4]
                head = await stub.getSegments(pb.GetSegmentsRequest(streamInfo=_info("sc", "st")))
                assert [s.segmentId.segmentId for s in head.segments] == [3, 4]

                assert (await stub.deleteScope(pb.ScopeInfo(scope="none"))).status == \
                    delete_scope.SCOPE_NOT_FOUND
                await stub.sealStream(_info("sc", "st"))
                await stub.deleteStream(_info("sc", "st"))
                assert (await stub.deleteScope(pb.ScopeInfo(scope="sc"))).status == \
                    delete_scope.SUCCESS
                servers = await stub.getControllerServerList(pb.ServerRequest())
                assert [(n.endpoint, n.port) for n in servers.nodeURI] == \
                    [("127.0.0.1", controller.port)]

    run(main())


def test_unknown_streams_are_not_found():
    async def main():
        async with EmbeddedController(STORES) as controller:
            channel, stub = await _stub(controller)
            async with channel:
                await stub.createScope(pb.ScopeInfo(scope="sc"))
                calls = [
                    stub.getCurrentSegments(_info("sc", "nope")),
                    stub.getSegments(pb.GetSegmentsRequest(streamInfo=_info("sc", "nope"))),
                    stub.getStreamConfiguration(_info("nope", "nope")),
                    stub.getSegmentsImmediatelyFollowing(
                        pb.SegmentId(streamInfo=_info("sc", "nope"), segmentId=0)),
                ]
                for call in calls:
                    with pytest.raises(grpc.aio.AioRpcError) as failure:
                        await call
                    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
                await stub.createStream(_config("sc", "st", 1))
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stub.getSegmentsImmediatelyFollowing(
                        pb.SegmentId(streamInfo=_info("sc", "st"), segmentId=5))
                assert failure.value.code() == grpc.StatusCode.NOT_FOUND

    run(main())


def test_a_servicer_bug_answers_internal_not_unknown(monkeypatch):
    def broken(count):
        raise RuntimeError("bug")

    monkeypatch.setattr(server_module, "key_ranges", broken)

    async def main():
        async with EmbeddedController(STORES) as controller:
            channel, stub = await _stub(controller)
            async with channel:
                await stub.createScope(pb.ScopeInfo(scope="sc"))
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stub.createStream(_config("sc", "st", 1))
                assert failure.value.code() == grpc.StatusCode.INTERNAL
                assert "bug" in failure.value.details()
            async with ControllerClient(controller.uri) as client:
                with pytest.raises(ControllerError) as typed:
                    await client.create_stream("sc", "st")
                assert typed.value.status == "INTERNAL"
                assert not await client.stream_exists("sc", "st")

    run(main())


def test_get_uri_answers_any_name_with_its_owning_store():
    async def main():
        stores = [("127.0.0.1", 7000 + i) for i in range(5)] + [("localhost", 7005)]
        async with EmbeddedController(stores, container_count=8) as controller:
            channel, stub = await _stub(controller)
            async with channel:
                seen = set()
                for scope, stream, segment_id in [("sc", "rg1_kvtable", 0), ("x", "y", 7),
                                                  ("", "z", (2 << 32) | 5), ("a", "b", 1)] + [
                        ("s", f"s{i}", i) for i in range(40)]:
                    uri = await stub.getURI(pb.SegmentId(streamInfo=_info(scope, stream),
                                                         segmentId=segment_id))
                    index = store_index_of(segment_name(scope, stream, segment_id), 6, 8)
                    expected = ("127.0.0.1", 7000 + index)
                    assert (uri.endpoint, uri.port) == expected
                    seen.add(index)
                assert len(seen) > 1

    run(main())


def test_listing_pages_terminate():
    async def main():
        async with EmbeddedController(STORES, list_page_size=2) as controller:
            channel, stub = await _stub(controller)
            async with channel:
                scopes = [f"scope{i}" for i in range(5)]
                for scope in scopes:
                    await stub.createScope(pb.ScopeInfo(scope=scope))
                token, pages = "", []
                while True:
                    reply = await stub.listScopes(
                        pb.ScopesRequest(continuationToken=pb.ContinuationToken(token=token)))
                    assert reply.HasField("continuationToken")
                    if not reply.scopes:
                        break
                    pages.append(list(reply.scopes))
                    token = reply.continuationToken.token
                    assert len(pages) < 10
                assert pages == [scopes[0:2], scopes[2:4], scopes[4:]]
                again = await stub.listScopes(
                    pb.ScopesRequest(continuationToken=pb.ContinuationToken(token=token)))
                assert list(again.scopes) == [] and again.continuationToken.token == token

                for i in range(3):
                    await stub.createStream(_config("scope1", f"st{i}", 1))
                await stub.createStream(_config("scope2", "other", 1))
                missing = await stub.listStreamsInScope(pb.StreamsInScopeRequest(
                    scope=pb.ScopeInfo(scope="nope"), continuationToken=pb.ContinuationToken()))
                assert missing.status == pb.StreamsInScopeResponse.SCOPE_NOT_FOUND
                assert list(missing.streams) == [] and missing.HasField("continuationToken")

            async with ControllerClient(controller.uri) as client:
                assert await client.list_scopes() == scopes
                assert await client.list_streams("scope1") == ["st0", "st1", "st2"]
                assert await client.list_streams("scope0") == []
                with pytest.raises(ScopeNotFoundError):
                    await client.list_streams("nope")

    run(main())


def test_segment_admin_failure_answers_failure():
    async def main():
        admin = RecordingAdmin(fail="create")
        async with EmbeddedController(STORES, segment_admin=admin) as controller:
            async with ControllerClient(controller.uri) as client:
                await client.create_scope("sc")
                with pytest.raises(ControllerError) as failure:
                    await client.create_stream("sc", "st", 2)
                assert failure.value.status == "FAILURE"
                assert not await client.stream_exists("sc", "st")
                admin.fail = "seal"
                assert await client.create_stream("sc", "st", 2)
                with pytest.raises(ControllerError):
                    await client.seal_stream("sc", "st")
                assert len(await client.get_current_segments("sc", "st")) == 2
                admin.fail = None
                await client.seal_stream("sc", "st")
                assert await client.get_current_segments("sc", "st") == []

    run(main())


def test_scale_and_truncate():
    async def main():
        admin = RecordingAdmin()
        async with EmbeddedController(STORES, segment_admin=admin) as controller:
            async with ControllerClient(controller.uri) as client:
                await client.create_scope("sc")
                await client.create_stream("sc", "st", 1)
                admin.calls.clear()
                split = await controller.scale_stream("sc", "st", [0], [(0.0, 0.5), (0.5, 1.0)])
                assert split == [(1 << 32) | 1, (1 << 32) | 2]
                assert admin.calls == [("create", "sc/st/1.#epoch.1"),
                                       ("create", "sc/st/2.#epoch.1"),
                                       ("seal", "sc/st/0.#epoch.0")]
                current = await client.get_current_segments("sc", "st")
                assert [(s.segment_id, s.min_key, s.max_key) for s in current] == \
                    [(split[0], 0.0, 0.5), (split[1], 0.5, 1.0)]
                successors = await client.get_successors("sc", "st", 0)
                assert [(s.segment.segment_id, s.predecessors) for s in successors] == \
                    [(split[0], (0,)), (split[1], (0,))]
                assert await client.get_successors("sc", "st", split[0]) == []

                merged = await controller.scale_stream("sc", "st", split, [(0.0, 1.0)])
                assert merged == [(2 << 32) | 3]
                for old in split:
                    (entry,) = await client.get_successors("sc", "st", old)
                    assert entry.segment.segment_id == merged[0]
                    assert entry.predecessors == tuple(split)
                    assert entry.segment.name == "sc/st/3.#epoch.2"

                for bad_sealed, bad_ranges in [([0], [(0.0, 1.0)]), (merged, [(0.0, 0.4)]),
                                               (merged, [(0.0, 0.5), (0.6, 1.0)]), ([], [])]:
                    with pytest.raises(ValueError):
                        await controller.scale_stream("sc", "st", bad_sealed, bad_ranges)
                with pytest.raises(LookupError):
                    await controller.scale_stream("sc", "nope", [0], [(0.0, 1.0)])

                head = await client.get_segments_at_head("sc", "st")
                assert [(h.segment_id, h.offset) for h in head] == [(0, 0)]
                admin.calls.clear()
                await controller.truncate_stream("sc", "st", {split[0]: 10, split[1]: 20})
                assert admin.calls == [("truncate", "sc/st/1.#epoch.1", 10),
                                       ("truncate", "sc/st/2.#epoch.1", 20),
                                       ("delete", "sc/st/0.#epoch.0")]
                head = await client.get_segments_at_head("sc", "st")
                assert [(h.segment_id, h.offset, h.name) for h in head] == \
                    [(split[0], 10, "sc/st/1.#epoch.1"), (split[1], 20, "sc/st/2.#epoch.1")]
                for bad_cut in ({0: 0}, {split[0]: 5}, {split[0]: -1, split[1]: 0}, {}):
                    with pytest.raises(ValueError):
                        await controller.truncate_stream("sc", "st", bad_cut)

                await client.seal_stream("sc", "st")
                admin.calls.clear()
                assert await client.delete_stream("sc", "st")
                assert sorted(admin.calls) == [("delete", "sc/st/1.#epoch.1"),
                                               ("delete", "sc/st/2.#epoch.1"),
                                               ("delete", "sc/st/3.#epoch.2")]
                # Numbering continues after the scaled stream's last number.
                await client.create_stream("sc", "st", 1)
                assert [s.segment_id for s in await client.get_current_segments("sc", "st")] == [4]

    run(main())


# ---- the client ------------------------------------------------------------------------------

def test_client_round_trips_and_typed_errors():
    async def main():
        async with EmbeddedController(STORES) as controller:
            async with ControllerClient(controller.uri) as client:
                assert await client.create_scope("sc") is True
                assert await client.create_scope("sc") is False
                assert await client.scope_exists("sc")
                with pytest.raises(InvalidNameError):
                    await client.create_scope("bad/name")
                assert await client.create_stream("sc", "st", 8, tags=["a"]) is True
                assert await client.create_stream("sc", "st", 8) is False
                with pytest.raises(ScopeNotFoundError):
                    await client.create_stream("nope", "st")
                with pytest.raises(InvalidNameError):
                    await client.create_stream("sc", "bad name")
                with pytest.raises(ValueError):
                    await client.create_stream("sc", "none", 0)

                segments = await client.get_current_segments("sc", "st")
                assert [s.segment_id for s in segments] == list(range(8))
                assert [(s.min_key, s.max_key) for s in segments] == key_ranges(8)
                assert segments[5].name == "sc/st/5.#epoch.0"
                assert segment_for_key("hello", segments).segment_id == 5
                head = await client.get_segments_at_head("sc", "st")
                assert [(h.segment_id, h.offset) for h in head] == [(i, 0) for i in range(8)]
                assert await client.get_successors("sc", "st", 3) == []
                assert await client.get_delegation_token("sc", "st") == ""

                with pytest.raises(StreamNotFoundError) as missing:
                    await client.get_current_segments("sc", "nope")
                assert isinstance(missing.value, LookupError)
                with pytest.raises(StreamNotFoundError):
                    await client.seal_stream("sc", "nope")
                with pytest.raises(ScopeNotFoundError):
                    await client.seal_stream("nope", "st")
                with pytest.raises(ControllerError) as not_empty:
                    await client.delete_scope("sc")
                assert not_empty.value.status == "SCOPE_NOT_EMPTY"
                with pytest.raises(ControllerError) as not_sealed:
                    await client.delete_stream("sc", "st")
                assert not_sealed.value.status == "STREAM_NOT_SEALED"

                await client.seal_stream("sc", "st")
                assert await client.get_current_segments("sc", "st") == []
                assert await client.delete_stream("sc", "st") is True
                assert await client.delete_stream("sc", "st") is False
                assert not await client.stream_exists("sc", "st")
                assert await client.delete_scope("sc") is True
                assert await client.delete_scope("sc") is False
            with pytest.raises(ConnectionClosedError):
                await client.create_scope("late")

    run(main())


def test_client_connection_failure_and_timeout():
    async def main():
        async with ControllerClient("tcp://127.0.0.1:1", timeout=5) as client:
            with pytest.raises(ConnectionFailedError):
                await client.create_scope("sc")
        admin = RecordingAdmin(delay=5.0)
        async with EmbeddedController(STORES, segment_admin=admin) as controller:
            async with ControllerClient(controller.uri, timeout=0.3) as client:
                await client.create_scope("sc")
                started = time.monotonic()
                with pytest.raises(TimeoutError) as slow:
                    await client.create_stream("sc", "st")
                assert isinstance(slow.value, PravegaWireError)
                assert time.monotonic() - started < 3

    run(main())


class CountingController(EmbeddedController):
    """Counts getURI calls, to observe the client's endpoint cache."""

    uri_calls = 0

    async def getURI(self, request, context):
        self.uri_calls += 1
        await asyncio.sleep(0.05)  # long enough for concurrent lookups to overlap
        return await super().getURI(request, context)


def test_endpoint_cache_and_invalidate():
    async def main():
        async with CountingController(STORES) as controller:
            async with ControllerClient(controller.uri) as client:
                name = "sc/st/3.#epoch.1"
                expected = STORES[store_index_of(name, len(STORES))]
                assert await client.get_endpoint(name) == expected
                assert await client.get_endpoint(name) == expected
                assert controller.uri_calls == 1
                client.invalidate(name)
                assert await client.get_endpoint(name) == expected
                assert controller.uri_calls == 2
                other = "sc/st/4.#epoch.1"
                results = await asyncio.gather(*(client.get_endpoint(other) for _ in range(5)))
                assert set(results) == {STORES[store_index_of(other, len(STORES))]}
                assert controller.uri_calls == 3
                # Invalidated while in flight: the answer is returned but not cached.
                lookup = asyncio.ensure_future(client.get_endpoint("sc/st/5.#epoch.0"))
                await asyncio.sleep(0.01)
                client.invalidate("sc/st/5.#epoch.0")
                await lookup
                await client.get_endpoint("sc/st/5.#epoch.0")
                assert controller.uri_calls == 5
                txn = "sc/st/3.#epoch.1#transaction.00000000000000010000000000000002"
                assert await client.get_endpoint(txn) == expected
                with pytest.raises(ValueError):
                    await client.get_endpoint("not-a-segment")

    run(main())


def test_auth_basic_bearer_and_tokens():
    async def main():
        async with EmbeddedController(STORES, auth=True,
                                      credentials={"admin": "1111_aaaa"}) as controller:
            async with ControllerClient(controller.uri) as anonymous:
                with pytest.raises(AuthenticationError):
                    await anonymous.create_scope("sc")
            async with ControllerClient(controller.uri, auth=("admin", "wrong")) as wrong:
                with pytest.raises(AuthenticationError):
                    await wrong.list_scopes()
            async with ControllerClient(controller.uri, auth=("admin", "1111_aaaa")) as client:
                assert await client.create_scope("sc")
                await client.create_stream("sc", "st", 2)
                token = await client.get_delegation_token("sc", "st")
                assert verify_token(token, controller.token_key,
                                    segment="sc/st/0.#epoch.0") == "ok"
                kv_token = await client.get_delegation_token("sc", "rg_kvtable")
                assert verify_token(kv_token, controller.token_key,
                                    segment="sc/rg_kvtable/0.#epoch.0") == "ok"
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{controller.port}")
                async with channel:
                    stub = pb_grpc.ControllerServiceStub(channel)
                    metadata = (("authorization", f"Bearer {token}"),)
                    ranges = await stub.getCurrentSegments(_info("sc", "st"), metadata=metadata)
                    assert verify_token(ranges.delegationToken, controller.token_key) == "ok"
                    silent = pb.StreamInfo(scope="sc", stream="st",
                                           accessOperation=pb.StreamInfo.NONE)
                    ranges = await stub.getCurrentSegments(silent, metadata=metadata)
                    assert ranges.delegationToken == ""
            async with ControllerClient(controller.uri, auth=token) as bearer:
                assert await bearer.list_scopes() == ["sc"]
            # Signed with the controller's key, expired ten seconds ago (no waiting).
            expired = issue_token(controller.token_key, "sc", "st", 1, time.time() - 10)
            assert verify_token(expired, controller.token_key) == "expired"
            async with ControllerClient(controller.uri, auth=expired) as stale:
                with pytest.raises(AuthenticationError):
                    await stale.list_scopes()
        async with EmbeddedController(STORES, auth=True) as open_controller:
            async with ControllerClient(open_controller.uri, auth=("anyone", "")) as client:
                assert await client.create_scope("sc")

    run(main())


def test_tls(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key_file), "-out", str(cert_file), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)

    async def main():
        tls = (cert_file.read_bytes(), key_file.read_bytes())
        async with EmbeddedController(STORES, tls=tls) as controller:
            assert controller.uri.startswith("tls://127.0.0.1:")
            async with ControllerClient(controller.uri, ca_file=str(cert_file)) as client:
                assert await client.create_scope("secure")
            plain = f"tcp://127.0.0.1:{controller.port}"
            async with ControllerClient(plain, timeout=5) as client:
                with pytest.raises(PravegaWireError):
                    await client.create_scope("plain")

    run(main())


# ---- interop with the real Rust client -------------------------------------------------------

def _start_controller_process(*extra: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    process = subprocess.Popen(
        [sys.executable, "-m", "pravega_wire.server.controller", "--port", "0",
         "--stores", "127.0.0.1:1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline().strip()
    if not line.startswith("tcp://"):
        process.kill()
        _, errors = process.communicate(timeout=10)
        pytest.fail(f"the controller process did not start: {line!r} {errors}")
    return process, line


def _stop_controller_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _import_rust_client():
    try:
        import pravega_client
    except ImportError as exc:
        print(f"pravega_client cannot be imported: {exc}")
        pytest.skip(f"the Rust-based pravega client is not installed: {exc}")
    return pravega_client


def test_rust_client_admin_calls():
    pravega_client = _import_rust_client()
    process, uri = _start_controller_process("--list-page-size", "1")  # listing pages of one
    try:
        manager = pravega_client.StreamManager(uri)
        assert manager.create_scope("rustscope") is True
        assert manager.create_scope("rustscope") is False
        assert manager.create_scope("second") is True
        assert manager.create_stream("rustscope", "rs", 8) is True
        assert manager.create_stream("rustscope", "rs", 8) is False
        policy = pravega_client.StreamScalingPolicy.fixed_scaling_policy(49)
        retention = pravega_client.StreamRetentionPolicy.none()
        assert manager.create_stream_with_policy("rustscope", "other", policy, retention,
                                                 ["t1", "t2"]) is True
        with pytest.raises(ValueError):  # SCOPE_NOT_FOUND: fails at once, no retries
            manager.create_stream("missing", "rs", 1)
        with pytest.raises(ValueError):  # gRPC NOT_FOUND: fails at once, no retries
            manager.get_stream_tags("rustscope", "missing")
        assert manager.list_scope() == ["rustscope", "second"]
        assert manager.list_stream("rustscope") == ["other", "rs"]
        assert manager.list_stream("second") == []
        assert manager.get_stream_tags("rustscope", "other") == ["t1", "t2"]
        assert manager.get_stream_tags("rustscope", "rs") is None

        async def ranges(stream):
            async with ControllerClient(uri) as client:
                return await client.get_current_segments("rustscope", stream)

        assert [(s.min_key, s.max_key) for s in run(ranges("rs"))] == key_ranges(8)
        assert run(ranges("other"))[-1].max_key == 1.0

        assert manager.seal_stream("rustscope", "rs") is True
        assert manager.delete_stream("rustscope", "rs") is True
        assert manager.delete_stream("rustscope", "rs") is False
        with pytest.raises(ValueError):  # SCOPE_NOT_EMPTY: fails at once, no retries
            manager.delete_scope("rustscope")
        assert manager.seal_stream("rustscope", "other") is True
        assert manager.delete_stream("rustscope", "other") is True
        assert manager.delete_scope("rustscope") is True
        assert manager.delete_scope("rustscope") is False
        assert manager.list_scope() == ["second"]
    finally:
        _stop_controller_process(process)


def test_rust_client_basic_auth(monkeypatch):
    pravega_client = _import_rust_client()
    monkeypatch.setenv("pravega_client_auth_method", "Basic")
    monkeypatch.setenv("pravega_client_auth_username", "hello")
    monkeypatch.setenv("pravega_client_auth_password", "12345")
    monkeypatch.delenv("pravega_client_auth_token", raising=False)
    process, uri = _start_controller_process("--auth", "--credentials", "hello:12345")
    try:
        manager = pravega_client.StreamManager(uri, auth_enabled=True)
        assert manager.create_scope("authscope") is True
        assert manager.create_stream("authscope", "st", 2) is True
        assert manager.seal_stream("authscope", "st") is True
        assert manager.delete_stream("authscope", "st") is True
        assert manager.delete_scope("authscope") is True
    finally:
        _stop_controller_process(process)

"""Delegation tokens on the client side: :class:`CachingTokenProvider` (exp parsing, renewal
near expiry, ``expired=True``, one fetch for concurrent callers, failures not cached, tokens
that are not JWTs), and the reader asking its provider for every read (fakes, and an embedded
cluster that checks tokens)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest

from pravega_wire import commands as C
from pravega_wire.client import CachingTokenProvider as Exported
from pravega_wire.client._common import (DEFAULT_TOKEN_REFRESH, CachingTokenProvider, no_token,
                                         token_expiry)
from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.client.stream import stream_readers
from pravega_wire.errors import ConnectionClosedError, RetriesExhaustedError

from client_fakes import FAST_RETRY, FakeCluster, FakePool, event_record, settle, until

SEG = "scope/stream/0.#epoch.0"
FAST = FAST_RETRY


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(claims, *, header=None) -> str:
    """A compact JWT with ``claims`` as its body (an unchecked signature)."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{b64url(json.dumps(header).encode())}.{b64url(body)}.c2lnbmF0dXJl"


class Fetch:
    """A fetch that hands out ``tokens`` in turn (the last one again when they run out) and
    records its calls; ``gate`` (if set) holds every call until it is set; ``errors`` are
    raised by the next calls instead."""

    def __init__(self, *tokens):
        self.tokens = list(tokens)
        self.calls = []
        self.gate = None
        self.errors = []
        self.cancelled = 0

    async def __call__(self, segment, expired):
        self.calls.append((segment, expired))
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.errors:
            raise self.errors.pop(0)
        return self.tokens[min(len(self.calls), len(self.tokens)) - 1]


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- exp claims -----------------------------------------------------------------------------

def test_the_exp_claim_of_a_jwt():
    assert token_expiry(jwt({"sub": "s", "exp": 1569837434})) == 1569837434.0
    assert token_expiry(jwt({"exp": 12.5})) == 12.5
    # The embedded controller pads its JSON with spaces; standard base64 is read too.
    assert token_expiry(jwt(b'{"exp": 77}   ')) == 77.0
    standard = base64.b64encode(b'{"exp":5,"x":"~~~?"}').decode()  # has '+' or '/'
    assert "/" in standard or "+" in standard
    assert token_expiry(f"h.{standard}.s") == 5.0


@pytest.mark.parametrize("token", [
    "", "opaque", "a.b", "a.b.c.d.e", "h.!!!.s", jwt(b"not json"), jwt(b"[1, 2]"),
    jwt({"sub": "no exp"}), jwt({"exp": "1569837434"}), jwt({"exp": True}),
    jwt({"exp": None}), jwt(b'{"exp": 1e999}'), jwt(b'{"exp": NaN}'),
    jwt({"exp": 10 ** 400}), "h." + "\u00e9" * 4 + ".s",
])
def test_tokens_without_a_usable_exp(token):
    assert token_expiry(token) is None


def test_the_embedded_controllers_tokens_have_their_exp():
    from pravega_wire.server.controller import _issue_token
    token = _issue_token(b"key", "scope", "stream", ttl=60, now=1_000_000.7)
    assert token_expiry(token) == 1_000_060.0


# ---- the caching provider ----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_token_is_cached_until_it_nears_its_expiry():
    assert Exported is CachingTokenProvider
    assert DEFAULT_TOKEN_REFRESH == 5.0  # Java's DEFAULT_REFRESH_THRESHOLD_SECONDS
    first, second = jwt({"exp": 1100}), jwt({"exp": 1200})
    fetch, clock = Fetch(first, second), Clock(1000.0)
    tokens = CachingTokenProvider(fetch, clock=clock)
    assert await tokens(SEG, False) == first
    assert await tokens("scope/stream/1.#epoch.0", False) == first  # the same stream
    clock.now = 1094.9  # more than 5 s before its exp
    assert await tokens(SEG, False) == first
    assert fetch.calls == [(SEG, False)]
    clock.now = 1095.0  # within 5 s of it: renewed
    assert await tokens(SEG, False) == second
    assert await tokens(SEG, False) == second
    assert fetch.calls == [(SEG, False), (SEG, False)] and tokens.fetches == 2
    assert "fetches=2" in repr(tokens)


@pytest.mark.asyncio
async def test_refresh_before_is_configurable():
    fetch, clock = Fetch(jwt({"exp": 1100}), jwt({"exp": 1200})), Clock(1000.0)
    tokens = CachingTokenProvider(fetch, refresh_before=60, clock=clock)
    await tokens(SEG, False)
    clock.now = 1039.0
    await tokens(SEG, False)
    assert len(fetch.calls) == 1
    clock.now = 1040.0
    await tokens(SEG, False)
    assert len(fetch.calls) == 2
    # A token that lives less long than refresh_before is fetched for every call (as in Java).
    short = CachingTokenProvider(Fetch(jwt({"exp": 1003})), clock=Clock(1000.0))
    for _ in range(3):
        await short(SEG, False)
    assert short.fetches == 3


@pytest.mark.asyncio
async def test_cached_says_what_a_call_would_return_without_a_fetch():
    fetch, clock = Fetch(jwt({"exp": 1100})), Clock(1000.0)
    tokens = CachingTokenProvider(fetch, clock=clock)
    assert tokens.cached(SEG) is None
    token = await tokens(SEG, False)
    assert tokens.cached(SEG) == token
    assert tokens.cached("scope/other/0.#epoch.0") is None
    clock.now = 1095.0
    assert tokens.cached(SEG) is None
    assert len(fetch.calls) == 1


@pytest.mark.asyncio
async def test_expired_forces_a_fetch():
    fetch = Fetch(jwt({"exp": 5000}), jwt({"exp": 6000}))
    tokens = CachingTokenProvider(fetch, clock=Clock(1000.0))
    assert token_expiry(await tokens(SEG, False)) == 5000
    assert token_expiry(await tokens(SEG, True)) == 6000  # fresh, though the clock says valid
    assert token_expiry(await tokens(SEG, False)) == 6000
    assert fetch.calls == [(SEG, False), (SEG, True)]


@pytest.mark.asyncio
@pytest.mark.parametrize("token", ["opaque-token", "", jwt({"sub": "no exp"})],
                         ids=["not_a_jwt", "auth_off", "no_exp"])
async def test_a_token_without_exp_is_kept_until_it_is_refused(token):
    fetch, clock = Fetch(token, "next"), Clock(0.0)
    tokens = CachingTokenProvider(fetch, clock=clock)
    for now in (0.0, 1e9, 1e12):
        clock.now = now
        assert await tokens(SEG, False) == token
    assert len(fetch.calls) == 1
    assert await tokens(SEG, True) == "next"
    assert len(fetch.calls) == 2


@pytest.mark.asyncio
async def test_tokens_are_kept_per_stream():
    fetch = Fetch("t1", "t2", "t3")
    tokens = CachingTokenProvider(fetch)
    assert await tokens("scope/a/0.#epoch.0", False) == "t1"
    assert await tokens("scope/b/0.#epoch.0", False) == "t2"
    assert await tokens("scope/a/3.#epoch.1#transaction.0123", False) == "t1"
    assert await tokens("scope/b/1.#epoch.0", False) == "t2"
    assert await tokens("odd-name", False) == "t3"  # not a qualified name: a key of its own
    assert len(fetch.calls) == 3
    tokens.invalidate("scope/a/7.#epoch.0")
    assert await tokens("scope/a/0.#epoch.0", False) == "t3"
    assert await tokens("scope/b/0.#epoch.0", False) == "t2"
    tokens.invalidate()
    await tokens("scope/b/0.#epoch.0", False)
    assert len(fetch.calls) == 5
    # A key function of the caller's: one token for everything.
    one = CachingTokenProvider(Fetch("only"), key=lambda segment: None)
    assert {await one(f"s/{n}/0", False) for n in range(5)} == {"only"}
    assert one.fetches == 1


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_fetch():
    fetch = Fetch("shared", "later")
    fetch.gate = asyncio.Event()
    tokens = CachingTokenProvider(fetch)
    callers = [asyncio.ensure_future(tokens(f"scope/stream/{n}.#epoch.0", n % 2 == 1))
               for n in range(20)]
    await until(lambda: fetch.calls, "the fetch")
    await settle()
    fetch.gate.set()
    assert await asyncio.gather(*callers) == ["shared"] * 20
    assert fetch.calls == [("scope/stream/0.#epoch.0", False)] and tokens.fetches == 1
    assert await tokens(SEG, False) == "shared"  # and then it is cached


@pytest.mark.asyncio
async def test_a_failed_fetch_fails_every_waiter_and_is_not_cached():
    fetch = Fetch("good")
    fetch.gate = asyncio.Event()
    fetch.errors = [ConnectionRefusedError("controller down")]
    tokens = CachingTokenProvider(fetch)
    callers = [asyncio.ensure_future(tokens(SEG, False)) for _ in range(5)]
    await until(lambda: fetch.calls, "the fetch")
    fetch.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results), results
    assert len(fetch.calls) == 1
    assert await tokens(SEG, False) == "good"  # the next call fetches again
    assert len(fetch.calls) == 2


@pytest.mark.asyncio
async def test_a_fetch_that_returns_no_str_is_a_type_error():
    fetch = Fetch(None, "fine")
    tokens = CachingTokenProvider(fetch)
    with pytest.raises(TypeError):
        await tokens(SEG, False)
    assert await tokens(SEG, False) == "fine"


@pytest.mark.asyncio
async def test_a_cancelled_caller_leaves_the_fetch_to_the_others():
    fetch = Fetch("t1", "t2")
    fetch.gate = asyncio.Event()
    tokens = CachingTokenProvider(fetch)
    first = asyncio.ensure_future(tokens(SEG, False))
    second = asyncio.ensure_future(tokens(SEG, False))
    await until(lambda: fetch.calls, "the fetch")
    first.cancel()
    await settle()
    assert fetch.cancelled == 0
    fetch.gate.set()
    assert await second == "t1"
    assert first.cancelled()
    # When the last caller goes, the fetch goes too; nothing is cached.
    fetch.gate.clear()
    lone = asyncio.ensure_future(tokens(SEG, True))
    await until(lambda: len(fetch.calls) == 2, "the second fetch")
    lone.cancel()
    await until(lambda: fetch.cancelled == 1, "the fetch cancelled")
    fetch.gate.set()
    assert await tokens(SEG, False) == "t2"
    assert len(fetch.calls) == 3


@pytest.mark.parametrize("kwargs, error", [
    ({"fetch": "not callable"}, TypeError), ({"refresh_before": "5"}, TypeError),
    ({"refresh_before": True}, TypeError), ({"refresh_before": -1}, ValueError),
    ({"refresh_before": float("inf")}, ValueError), ({"refresh_before": float("nan")}, ValueError),
    ({"key": 3}, TypeError), ({"clock": None}, TypeError),
])
def test_caching_provider_validation(kwargs, error):
    kwargs.setdefault("fetch", no_token)
    with pytest.raises(error):
        CachingTokenProvider(**kwargs)


# ---- the reader asks for every read (fakes) ----------------------------------------------------

class Counting:
    """A provider handing out ``t1``, ``t2``, ... (a new token on each call)."""

    def __init__(self):
        self.calls = []

    async def __call__(self, segment, expired):
        self.calls.append((segment, expired))
        return f"t{len(self.calls)}"


def fake_setup(payloads, *, limit=None, sealed=True):
    cluster = FakeCluster()
    cluster.create(SEG, b"".join(event_record(p) for p in payloads))
    if sealed:
        cluster.seal(SEG)
    if limit is not None:
        cluster.store().read_limits.extend([limit] * 1000)
    return cluster, FakePool(cluster)


async def read_to_end(reader):
    out = []
    while True:
        try:
            out.append(bytes(await reader.read_event()))
        except EndOfSegment:
            return out


@pytest.mark.asyncio
async def test_every_read_carries_a_token_asked_for_it():
    payloads = [bytes([n]) * 10 for n in range(6)]
    cluster, pool = fake_setup(payloads, limit=18)  # one event per read
    tokens = Counting()
    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=tokens,
                             retry=FAST) as reader:
        assert await read_to_end(reader) == payloads
    reads = pool.last_flow.sent_of(C.ReadSegment)
    assert len(reads) == 6  # one per event (the last reply says end of segment too)
    assert [r.delegation_token for r in reads] == [f"t{n}" for n in range(1, 7)]
    assert tokens.calls == [(SEG, False)] * 6
    assert len(pool.flows) == 1  # one connection for all of them


@pytest.mark.asyncio
async def test_without_a_token_provider_reads_are_sent_at_once():
    payloads = [b"x" * 10 for _ in range(4)]
    cluster, pool = fake_setup(payloads, limit=18)
    async with SegmentReader(pool, cluster.endpoints[0], SEG, retry=FAST) as reader:
        def no_task(*args):
            raise AssertionError("a reader without tokens asked for one")
        reader._ask_token = no_task
        assert await read_to_end(reader) == payloads
    assert {r.delegation_token for r in pool.last_flow.sent_of(C.ReadSegment)} == {""}


class CountingCache(CachingTokenProvider):
    """Counts the (asynchronous) calls; a reader takes a token in force from ``cached``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    async def __call__(self, segment, expired):
        self.calls.append((segment, expired))
        return await super().__call__(segment, expired)


@pytest.mark.asyncio
async def test_a_caching_providers_token_in_force_is_taken_without_a_task():
    payloads = [bytes([n]) * 10 for n in range(6)]
    cluster, pool = fake_setup(payloads, limit=18)  # one event per read
    clock = Clock(1000.0)
    fetch = Fetch(jwt({"exp": 1100}), jwt({"exp": 1200}))
    tokens = CountingCache(fetch, clock=clock)
    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=tokens,
                             retry=FAST) as reader:
        assert [bytes(await reader.read_event()) for _ in range(3)] == payloads[:3]
        assert tokens.calls == [(SEG, False)]  # only the first read waited for a fetch
        clock.now = 1096.0  # the token nears its expiry: the next read waits for a new one
        assert [bytes(await reader.read_event()) for _ in range(3)] == payloads[3:]
        with pytest.raises(EndOfSegment):
            await reader.read_event()
    sent = [token_expiry(r.delegation_token) for r in pool.last_flow.sent_of(C.ReadSegment)]
    assert sent[:3] == [1100] * 3 and sent[-1] == 1200
    assert len(fetch.calls) == 2 and len(tokens.calls) == 2
    assert len(pool.flows) == 1


@pytest.mark.asyncio
async def test_an_expired_token_goes_back_to_the_caching_provider():
    cluster, pool = fake_setup([b"a"])
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    tokens = CountingCache(Fetch("t1", "t2"))
    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=tokens,
                             retry=FAST) as reader:
        read = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(C.AuthTokenCheckFailed(flow.flow_id << 32, "",
                                            C.AuthTokenCheckFailed.TOKEN_EXPIRED))
        assert bytes(await read) == b"a"
    assert tokens.calls == [(SEG, False), (SEG, True)]
    assert pool.last_flow.sent_of(C.ReadSegment)[0].delegation_token == "t2"


@pytest.mark.asyncio
async def test_a_jwt_past_its_expiry_is_never_sent_on_a_read():
    """A store refuses a read for an expired token with the read offset as request id (Java's
    quirk), a refusal no flow receives; and reads have no reply timeout (a store holds reads at
    the tail for minutes). So a provider's JWT whose ``exp`` has passed is not sent: the reader
    asks again with ``expired=True`` and sends the fresh one."""
    cluster, pool = fake_setup([b"a", b"b"], limit=9)
    stale, fresh = jwt({"exp": 1000}), jwt({"exp": 4102444800})  # 1970 and 2100
    cluster.valid_tokens = {fresh}
    cluster.expired_tokens = {stale}
    calls = []

    async def tokens(segment, expired):
        calls.append(expired)
        return fresh if expired else stale

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=tokens,
                             retry=FAST) as reader:
        assert await read_to_end(reader) == [b"a", b"b"]
        assert reader.connections == 1  # no reconnect: the stale token was never sent
    sent = [r.delegation_token for f in pool.flows for r in f.sent_of(C.ReadSegment)]
    assert sent and set(sent) == {fresh}
    assert calls == [False, True] * len(sent)
    assert not pool.unrouted  # no refusal went astray


@pytest.mark.asyncio
async def test_a_failing_provider_is_retried_then_the_reader_reads():
    cluster, pool = fake_setup([b"a"])
    calls = []

    async def flaky(segment, expired):
        calls.append(expired)
        if len(calls) <= 2:
            raise ConnectionRefusedError("controller down")
        return "token"

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=flaky,
                             retry=FAST) as reader:
        assert await read_to_end(reader) == [b"a"]
        assert reader.connections == 3  # a failed token is a failed attempt: reconnected
    assert {r.delegation_token for f in pool.flows for r in f.sent_of(C.ReadSegment)} == {
        "token"}


@pytest.mark.asyncio
async def test_a_provider_that_always_fails_exhausts_the_retries():
    cluster, pool = fake_setup([b"a"])
    calls = []

    async def broken(segment, expired):
        calls.append(expired)
        raise ConnectionRefusedError("controller down")

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=broken,
                             retry=FAST) as reader:
        with pytest.raises(RetriesExhaustedError) as info:
            await reader.read_event()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert len(calls) == FAST.attempts
    assert not any(f.sent_of(C.ReadSegment) for f in pool.flows)


@pytest.mark.asyncio
async def test_a_provider_that_does_not_answer_is_bounded_by_reply_timeout():
    cluster, pool = fake_setup([b"a"])
    calls, cancelled = [], []

    async def slow_once(segment, expired):
        calls.append(expired)
        if len(calls) == 1:
            try:
                await asyncio.Event().wait()  # never
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        return "token"

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=slow_once,
                             retry=FAST, reply_timeout=0.05) as reader:
        assert await read_to_end(reader) == [b"a"]
    assert cancelled == [True]  # the question that timed out was withdrawn


@pytest.mark.asyncio
async def test_a_bad_token_or_provider_fails_the_reader_with_a_type_error():
    cluster, pool = fake_setup([b"a"])

    async def not_a_str(segment, expired):
        return 42

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=not_a_str,
                             retry=FAST) as reader:
        with pytest.raises(TypeError):
            await reader.read_event()
    async with SegmentReader(pool, cluster.endpoints[0], SEG,
                             token_provider=lambda segment, expired: "sync", retry=FAST) as reader:
        with pytest.raises(TypeError):
            await reader.read_event()


@pytest.mark.asyncio
async def test_close_withdraws_the_question_for_a_token():
    cluster, pool = fake_setup([b"a"])
    asked, cancelled = asyncio.Event(), []

    async def pending(segment, expired):
        asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    reader = SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=pending, retry=FAST)
    read = asyncio.ensure_future(reader.read_event())
    await asyncio.wait_for(asked.wait(), 5)
    await reader.close()
    with pytest.raises(ConnectionClosedError):
        await read
    await until(lambda: cancelled, "the provider cancelled")
    assert reader._token_task is None and reader._overdue is None
    assert not pool.last_flow.sent_of(C.ReadSegment)


@pytest.mark.asyncio
async def test_a_lost_connection_withdraws_the_question_for_a_token():
    cluster, pool = fake_setup([b"a"])
    gate, calls, cancelled = asyncio.Event(), [], []

    async def gated(segment, expired):
        calls.append(expired)
        if len(calls) == 1:
            try:
                await gate.wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        return "token"

    async with SegmentReader(pool, cluster.endpoints[0], SEG, token_provider=gated,
                             retry=FAST) as reader:
        read = asyncio.ensure_future(reader.read_event())
        await until(lambda: calls, "the question")
        pool.last_flow.drop()
        assert bytes(await read) == b"a"
        assert cancelled == [True] and len(pool.flows) == 2
        assert not pool.flows[0].sent_of(C.ReadSegment)


@pytest.mark.asyncio
async def test_stream_readers_with_auth_share_one_cached_token():
    cluster = FakeCluster()
    cluster.valid_tokens = {"token"}
    names = [f"scope/stream/{n}.#epoch.0" for n in range(3)]
    for name in names:
        cluster.create(name, event_record(b"e1") + event_record(b"e2"))
        cluster.seal(name)
        cluster.store().read_limits.extend([10] * 10)

    class Controller:
        token_requests = 0

        async def get_segments_at_head(self, scope, stream):
            from pravega_wire.client.controller import SegmentLocation
            return [SegmentLocation(scope, stream, n, 0) for n in range(3)]

        async def get_delegation_token(self, scope, stream):
            self.token_requests += 1
            return "token"

        async def get_endpoint(self, segment):
            return cluster.endpoints[0]

        def invalidate(self, segment):
            pass

    controller, pool = Controller(), FakePool(cluster)
    with pytest.raises(TypeError):
        await stream_readers(pool, controller, "scope", "stream", auth=True,
                             token_provider=no_token)
    readers = await stream_readers(pool, controller, "scope", "stream", auth=True, retry=FAST)
    assert [r.segment for r in readers] == names
    for reader in readers:
        async with reader:
            assert await read_to_end(reader) == [b"e1", b"e2"]
    reads = [r for f in pool.flows for r in f.sent_of(C.ReadSegment)]
    assert len(reads) >= 6 and {r.delegation_token for r in reads} == {"token"}
    assert controller.token_requests == 1


# ---- against an embedded cluster that checks tokens --------------------------------------------

@pytest.mark.asyncio
async def test_a_reader_on_a_cluster_asks_its_provider_for_every_read():
    from pravega_wire.pool import ClientConfig, ConnectionPool
    from pravega_wire.server import EmbeddedCluster
    async with EmbeddedCluster(stores=1, auth=True) as cluster:
        segment = "tokens/stream/0.#epoch.0"
        await cluster.create_segment(segment)
        store = cluster.stores[0]
        calls = []

        async def tokens(segment: str, expired: bool) -> str:
            calls.append(expired)
            return cluster.issue_token("tokens", "stream")

        async with ConnectionPool(ClientConfig()) as pool:
            async with SegmentReader(pool, store.endpoint, segment, token_provider=tokens,
                                     reply_timeout=10.0) as reader:
                for n in range(3):
                    asked = len(calls)
                    store.storage.append(store.storage.get(segment),
                                         struct.pack(">ii", 0, 1) + bytes([n]))
                    store.storage.commit()
                    assert bytes(await reader.read_event(timeout=5)) == bytes([n])
                    assert len(calls) > asked  # the read that brought it asked for a token
                assert reader.connections == 1
        assert not any(calls)

        # The same through the caching provider: one fetch for all the reads.
        fetches = []

        async def fetch(segment: str, expired: bool) -> str:
            fetches.append(expired)
            return cluster.issue_token("tokens", "stream")

        cached = CachingTokenProvider(fetch)
        async with ConnectionPool(ClientConfig()) as pool:
            async with SegmentReader(pool, store.endpoint, segment, token_provider=cached,
                                     buffer_size=8, reply_timeout=10.0) as reader:
                assert [bytes(await reader.read_event(timeout=5)) for _ in range(3)] == [
                    b"\x00", b"\x01", b"\x02"]
        assert fetches == [False]

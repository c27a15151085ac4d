"""The embedded cluster: several stores with placement, the controller driving the stores,
durability across a restart with a data directory, the child-process cluster and the
``pravega-wire serve`` command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.cli import main as cli_main
from pravega_wire.server import EmbeddedCluster, FaultPlan
from pravega_wire.server.placement import store_index_of
from pravega_wire.server.segmentstore import DEFAULT_READ_WAIT
from test_server_support import WAIT, Wire, append_end, events

W1 = uuid.UUID(int=0x41)


def segment_owned_by(index: int, stores: int, stream: str = "st") -> str:
    return next(f"sc/{stream}/{n}.#epoch.0" for n in range(1000)
                if store_index_of(f"sc/{stream}/{n}.#epoch.0", stores) == index)


# ---- in-process cluster -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_every_store_owns_the_segments_placement_gives_it():
    async with EmbeddedCluster(stores=3, controller=False) as cluster:
        assert len({port for _, port in cluster.store_endpoints}) == 3
        for index in range(3):
            mine = segment_owned_by(index, 3)
            cluster.store_for(mine).create_segment(mine)
            for other, endpoint in enumerate(cluster.store_endpoints):
                wire = await Wire.open(endpoint)
                wire.send(C.GetStreamSegmentInfo(1, mine, ""))
                reply = await wire.recv()
                if other == index:
                    assert reply.exists
                else:
                    assert reply == C.WrongHost(1, mine, "", "")
                await wire.close()


@pytest.mark.asyncio
async def test_the_controller_creates_and_seals_segments_on_their_stores():
    import grpc

    from pravega_wire._proto import controller_pb2 as pb
    from pravega_wire._proto import controller_pb2_grpc as pb_grpc

    async with EmbeddedCluster(stores=3) as cluster:
        assert cluster.controller_uri.startswith("tcp://127.0.0.1:")
        target = cluster.controller_uri[len("tcp://"):]
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.ControllerServiceStub(channel)
            await asyncio.wait_for(stub.createScope(pb.ScopeInfo(scope="sc")), WAIT)
            config = pb.StreamConfig(streamInfo=pb.StreamInfo(scope="sc", stream="st"),
                                     scalingPolicy=pb.ScalingPolicy(minNumSegments=8))
            status = await asyncio.wait_for(stub.createStream(config), WAIT)
            assert status.status == pb.CreateStreamStatus.SUCCESS
            names = [f"sc/st/{n}.#epoch.0" for n in range(8)]
            for name in names:
                holders = [i for i, s in enumerate(cluster.stores) if name in s.storage]
                assert holders == [store_index_of(name, 3)]
                uri = await asyncio.wait_for(stub.getURI(pb.SegmentId(
                    streamInfo=pb.StreamInfo(scope="sc", stream="st"),
                    segmentId=int(name.split("/")[2].split(".")[0]))), WAIT)
                assert (uri.endpoint, uri.port) == cluster.store_endpoints[holders[0]]
            await asyncio.wait_for(stub.sealStream(pb.StreamInfo(scope="sc", stream="st")), WAIT)
            assert all(cluster.store_for(n).storage.get(n).sealed for n in names)


@pytest.mark.asyncio
async def test_a_restarted_store_has_everything_it_acknowledged(tmp_path):
    name = segment_owned_by(1, 2)
    async with EmbeddedCluster(stores=2, controller=False, data_dir=tmp_path) as cluster:
        cluster.store_for(name).create_segment(name)
        endpoint = cluster.store_endpoints[1]
        wire = await Wire.open(endpoint)
        wire.send(C.SetupAppend(1, W1, name, ""))
        await wire.recv()
        payloads = [bytes([i]) * (i * 100) for i in range(1, 30)]
        wire.send(*(append_end(W1, events(p), i) for i, p in enumerate(payloads, 1)))
        acks = await wire.recv_n(len(payloads))
        assert acks[-1].event_number == len(payloads)
        await cluster.restart_store(1, crash=True)  # a crash: nothing flushed on the way down
        assert cluster.store_endpoints[1] == endpoint
        again = await Wire.open(endpoint)
        again.send(C.SetupAppend(2, W1, name, ""),
                   C.ReadSegment(name, 0, 10 * 1024 * 1024, "", 3))
        setup, read = await again.recv_n(2)
        assert setup.last_event_number == len(payloads)
        assert bytes(read.data) == events(*payloads)
        assert read.offset == 0 and len(read.data) == acks[-1].current_segment_write_offset
        await again.close()
    assert os.path.isfile(tmp_path / "store1" / "journal.log")


@pytest.mark.asyncio
async def test_an_in_memory_restart_keeps_the_segments():
    name = segment_owned_by(0, 1)
    async with EmbeddedCluster(stores=1, controller=False) as cluster:
        store = cluster.stores[0]
        store.create_segment(name)
        store.storage.append(store.storage.get(name), b"data", [(W1, 1)])
        plan = cluster.faults(0)
        restarted = await cluster.restart_store(0)
        assert restarted is not store and restarted.faults is plan
        assert restarted.storage.get(name).attribute(W1) == 1


@pytest.mark.asyncio
async def test_a_killed_server_process_loses_nothing_it_acknowledged(tmp_path):
    """SIGKILL the serving process right after the acknowledgements, start a new one on the
    same data directory: every acknowledged append is there, and the writer's last event
    number with it."""
    name = segment_owned_by(0, 1)
    payloads = [bytes([i]) * (i * 1000) for i in range(1, 40)]
    async with EmbeddedCluster.in_child_process(stores=1, controller=False,
                                                data_dir=tmp_path) as first:
        wire = await Wire.open(first.store_endpoints[0])
        wire.send(C.CreateSegment(1, name, 0, 0, ""), C.SetupAppend(2, W1, name, ""))
        await wire.recv_n(2)
        wire.send(*(append_end(W1, events(p), i) for i, p in enumerate(payloads, 1)))
        acks = await wire.recv_n(len(payloads))
        first.process.kill()
        await asyncio.to_thread(first.process.wait, WAIT)
        await wire.close()
    async with EmbeddedCluster.in_child_process(stores=1, controller=False,
                                                data_dir=tmp_path) as second:
        wire = await Wire.open(second.store_endpoints[0])
        wire.send(C.SetupAppend(3, W1, name, ""), C.ReadSegment(name, 0, 1 << 24, "", 4))
        setup, read = await wire.recv_n(2)
        assert setup.last_event_number == len(payloads)
        assert bytes(read.data) == events(*payloads)
        assert len(read.data) == acks[-1].current_segment_write_offset
        await wire.close()


# ---- child process and command line -------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_child_cluster_serves_takes_faults_and_reports_stats():
    plan = FaultPlan()
    plan.incompatible_hello()
    child = EmbeddedCluster.in_child_process(stores=2, controller=False, faults={1: plan})
    async with child:
        assert child.controller_uri is None and len(child.store_endpoints) == 2
        healthy = await Wire.open(child.store_endpoints[0])
        healthy.send(C.KeepAlive())
        assert await healthy.recv() == C.KeepAlive()
        await healthy.close()
        faulty = await Wire.open(child.store_endpoints[1], hello=False)
        faulty.send(C.Hello(17, 5))
        assert await faulty.recv() == C.Hello(4, 1)
        await faulty.close()
        pid = child.process.pid
    assert child.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert child.stats[0]["KeepAlive"] == 1 and child.stats[0]["> Hello"] == 1
    assert child.stats[1]["fault incompatible_hello"] == 1


@pytest.mark.asyncio
async def test_read_wait_bounds_the_held_reads_of_every_store_in_process_and_in_a_child():
    async with EmbeddedCluster(stores=2, controller=False) as cluster:
        assert [store.read_wait for store in cluster.stores] == [DEFAULT_READ_WAIT] * 2
    name = "sc/st/0.#epoch.0"
    async with EmbeddedCluster.in_child_process(stores=1, controller=False,
                                                read_wait=0.05) as child:  # --read-wait
        wire = await Wire.open(child.store_endpoints[0])
        wire.send(C.CreateSegment(1, name, C.NO_SCALE, 0, ""), C.ReadSegment(name, 0, 10, "", 2))
        assert await wire.recv_n(2) == [C.SegmentCreated(1, name),
                                        C.SegmentRead(name, 0, True, False, b"", 2)]
        await wire.close()


def test_a_child_cluster_with_a_controller_prints_its_uri():
    with EmbeddedCluster.in_child_process(stores=1) as child:
        assert child.controller_uri.startswith("tcp://127.0.0.1:")
        assert child.returncode is None
    assert child.process is None


def test_serve_prints_endpoints_and_exits_cleanly_on_sigterm():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] + sys.path))
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pravega_wire.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "serve", "--stores", "2", "--no-controller"],
        stdout=subprocess.PIPE, env=env)
    try:
        lines = [process.stdout.readline().decode().strip() for _ in range(3)]
        assert lines[0] == "controller: none"
        assert all(line.startswith("store: tcp://127.0.0.1:") for line in lines[1:])
        process.terminate()
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        process.stdout.close()


@pytest.mark.parametrize("argv", [
    ["serve", "--stores", "0"], ["serve", "--faults", "[1, 2]"],
    ["serve", "--faults", '{"0": [{"action": "nonsense"}]}'],
    ["serve", "--controller-port", "70000"], []])
def test_bad_command_lines_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2
    assert "pravega-wire" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_a_connection_accepted_as_the_store_stops_is_not_served():
    """A connection accepted just before stop() must not outlive it (found by the soak)."""
    import socket

    from pravega_wire.server.segmentstore import SegmentStore
    from pravega_wire.server.storage import Storage

    store = SegmentStore(Storage())
    await store.start()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        sock.connect_ex(store.endpoint)
        for _ in range(3):
            await asyncio.sleep(0)
        await store.stop()
        for _ in range(3):
            await asyncio.sleep(0)
        assert store.connection_count == 0
    finally:
        sock.close()

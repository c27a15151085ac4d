"""The per-message core of a connection (``pravega_wire._flowcore`` and its pure twin
``_flowcore_py``): both twins, in the same run, against a recording stand-in for the
connection, so that each rule of dispatch and sending is checked on both."""

from __future__ import annotations

import uuid

import pytest

import pravega_wire.connection as connection_module
from pravega_wire import commands as C
from pravega_wire._mode import pure_requested
from pravega_wire.errors import (ConnectionClosedError, ConnectionFailedError,
                                 InvalidMessageError)
from pravega_wire.flow import pack_request_id

from conftest import TWINS, load_twin

WRITER = uuid.UUID(int=7)


@pytest.fixture(params=TWINS)
def core(request):
    return load_twin("_flowcore", request.param)


def test_the_compiled_core_is_the_one_in_use_unless_pure_was_asked_for():
    expected = "pure" if pure_requested() else "compiled"
    assert connection_module.IMPLEMENTATION == expected
    assert connection_module.FlowConnection.__mro__[1].__module__ == \
        f"pravega_wire._flowcore{'_py' if expected == 'pure' else ''}"


class Encoder:
    def __init__(self):
        self.written, self.appended, self.events, self.acks = [], [], [], []
        self.fail_with = None

    def write_command(self, cmd):
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append(cmd)

    def append(self, append):
        if self.fail_with is not None:
            raise self.fail_with
        self.appended.append(append)

    def append_event(self, *args):
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append(args)

    def record_ack(self, request_id, event_number):
        self.acks.append((request_id, event_number))


class _Conn:
    """What the core needs of a connection, recording every call (on the twin's
    ConnectionCore: see :func:`Conn`)."""

    def __init__(self, core, *, single=False):
        self.core = core
        self._encoder = Encoder()
        self._flows = {}
        self._single = None
        self._state = core.OPEN
        self._flush_scheduled = False
        self.flushes_scheduled = 0
        self.calls = []
        self.single_mode = single

    def add(self, flow_id, listener):
        flow = self.core.FlowCore(flow_id, self, listener)
        self._flows[flow_id] = flow
        if self.single_mode:
            self._single = flow
        return flow

    def _schedule_flush(self):
        self._flush_scheduled = True
        self.flushes_scheduled += 1

    def _encoder_failed(self, e):
        self.calls.append(("encoder_failed", e))
        self._state = self.core.CLOSED
        return ConnectionFailedError(f"closed by its encoder: {e}")

    def _control(self, reply):
        self.calls.append(("control", reply))
        if type(reply) is C.KeepAlive:
            return True
        self._state = self.core.CLOSED
        return False

    def _drop(self, reply):
        self.calls.append(("drop", reply))

    def _listener_failed(self, flow, e):
        self.calls.append(("listener_failed", flow.flow_id, e))
        del self._flows[flow.flow_id]


def Conn(core, *, single=False):
    cls = type("Conn", (_Conn, core.ConnectionCore), {})
    return cls(core, single=single)


class Listener:
    def __init__(self, log, name, *, raises=None, on_reply=None):
        self.log, self.name, self.raises, self.on_reply = log, name, raises, on_reply

    def reply_received(self, reply):
        self.log.append((self.name, reply))
        if self.on_reply is not None:
            self.on_reply(reply)
        if self.raises is not None:
            raise self.raises

    def connection_lost(self, exc):  # pragma: no cover - the core never calls it
        raise AssertionError("the core does not report lost connections")


def attribute(flow_id, seq):
    return C.SegmentAttribute(pack_request_id(flow_id, seq), seq)


def test_replies_go_to_the_flow_their_request_id_names_in_order(core):
    conn, log = Conn(core), []
    conn.add(1, Listener(log, "a"))
    conn.add(2, Listener(log, "b"))
    replies = [attribute(2, 1), attribute(1, 1), attribute(2, 2), attribute(1, 2)]
    core.dispatch(conn, replies)
    assert log == [("b", replies[0]), ("a", replies[1]), ("b", replies[2]), ("a", replies[3])]
    assert conn.calls == []


def test_an_unknown_flow_or_a_negative_request_id_is_dropped_never_delivered(core):
    conn, log = Conn(core), []
    conn.add(1, Listener(log, "a"))
    stray = [attribute(3, 1), C.SegmentAttribute(-1, 0), attribute(0, 5)]
    core.dispatch(conn, stray + [attribute(1, 1)])
    assert [r for _, r in log] == [attribute(1, 1)]
    assert conn.calls == [("drop", r) for r in stray]


@pytest.mark.parametrize("replace", [False, True], ids=["closed", "replaced"])
def test_a_flow_closed_or_replaced_mid_batch_gets_nothing_more(core, replace):
    """Replies for one flow come in runs; a flow that closes during its run hears no more of
    it (the rest is dropped), and a new flow that takes the same id gets the rest."""
    conn, log = Conn(core), []

    def close(reply):
        if reply.value == 1:
            flow = conn._flows.pop(1)
            flow._conn = None  # what closing a flow does
            if replace:
                conn.add(1, Listener(log, "new"))

    conn.add(1, Listener(log, "old", on_reply=close))
    replies = [attribute(1, i) for i in range(4)]
    core.dispatch(conn, replies)
    assert log[:2] == [("old", replies[0]), ("old", replies[1])]
    if replace:
        assert log[2:] == [("new", replies[2]), ("new", replies[3])]
        assert conn.calls == []
    else:
        assert log[2:] == []
        assert conn.calls == [("drop", replies[2]), ("drop", replies[3])]


def test_data_appended_feeds_the_tracker_before_its_flow_hears_it(core):
    conn, log = Conn(core), []
    ack = C.DataAppended(pack_request_id(1, 4), WRITER, 10, 9, 1000)
    conn.add(1, Listener(log, "a", on_reply=lambda r: log.append(list(conn._encoder.acks))))
    core.dispatch(conn, [ack])
    assert log == [("a", ack), [(ack.request_id, 10)]]


def test_keepalive_goes_to_the_connection_and_dispatch_goes_on(core):
    conn, log = Conn(core), []
    conn.add(1, Listener(log, "a"))
    core.dispatch(conn, [C.KeepAlive(), attribute(1, 1)])
    assert conn.calls == [("control", C.KeepAlive())]
    assert log == [("a", attribute(1, 1))]


def test_a_frame_that_is_not_a_reply_stops_dispatch_once_control_closes(core):
    conn, log = Conn(core), []
    conn.add(1, Listener(log, "a"))
    bad = C.ReadSegment("s", 0, 10, "", pack_request_id(1, 1))
    core.dispatch(conn, [attribute(1, 1), bad, attribute(1, 2)])
    assert log == [("a", attribute(1, 1))]
    assert conn.calls == [("control", bad)]


def test_a_listener_that_raises_fails_its_flow_only(core):
    conn, log = Conn(core), []
    boom = RuntimeError("boom")
    conn.add(1, Listener(log, "a", raises=boom))
    conn.add(2, Listener(log, "b"))
    core.dispatch(conn, [attribute(1, 1), attribute(2, 1), attribute(1, 2), attribute(2, 2)])
    assert conn.calls[0] == ("listener_failed", 1, boom)
    assert conn.calls[1:] == [("drop", attribute(1, 2))]  # the failed flow is gone
    assert log == [("a", attribute(1, 1)), ("b", attribute(2, 1)), ("b", attribute(2, 2))]


def test_nothing_is_delivered_after_a_listener_closes_the_connection(core):
    conn, log = Conn(core), []

    def close(reply):
        conn._state = core.CLOSED

    conn.add(1, Listener(log, "a", on_reply=close))
    conn.add(2, Listener(log, "b"))
    core.dispatch(conn, [attribute(1, 1), attribute(2, 1)])
    assert log == [("a", attribute(1, 1))]


def test_the_single_flow_of_a_connection_without_flows_gets_every_reply(core):
    conn, log = Conn(core, single=True), []
    conn.add(0, Listener(log, "only"))
    replies = [attribute(5, 1), C.SegmentAttribute(-1, 0), attribute(0, 2)]
    core.dispatch(conn, replies)
    assert log == [("only", r) for r in replies]
    assert conn.calls == []


def test_send_encodes_at_once_and_schedules_one_flush(core):
    conn = Conn(core)
    flow = conn.add(1, Listener([], "a"))
    cmds = [C.GetSegmentAttribute(pack_request_id(1, i), "s", WRITER, "") for i in range(3)]
    for cmd in cmds:
        flow.send(cmd)
    assert conn._encoder.written == cmds
    assert conn.flushes_scheduled == 1
    flow.append("an append")
    flow.append_event("s", WRITER, 1, b"x", 5)
    assert conn._encoder.appended == ["an append"]
    assert conn._encoder.events == [("s", WRITER, 1, b"x", 5)]
    assert conn.flushes_scheduled == 1


def test_setup_appends_are_remembered_once_per_session(core):
    conn = Conn(core)
    flow = conn.add(1, Listener([], "a"))
    for segment in ("s", "s", "t"):
        flow.send(C.SetupAppend(pack_request_id(1, 1), WRITER, segment, ""))
    assert flow._sessions == [("s", WRITER), ("t", WRITER)]


def test_an_encoder_error_reaches_the_caller_and_the_flow_stays(core):
    conn = Conn(core)
    flow = conn.add(1, Listener([], "a"))
    conn._encoder.fail_with = InvalidMessageError("too long")
    with pytest.raises(InvalidMessageError):
        flow.send(C.GetSegmentAttribute(1, "s", WRITER, ""))
    assert conn.calls == [] and conn.flushes_scheduled == 0


@pytest.mark.parametrize("method, args", [
    ("send", (C.KeepAlive(),)), ("append", ("x",)), ("append_event", ("s", WRITER, 1, b"", 1))])
def test_an_encoder_that_gives_up_fails_the_connection(core, method, args):
    conn = Conn(core)
    flow = conn.add(1, Listener([], "a"))
    cause = ConnectionClosedError("too many sessions")
    conn._encoder.fail_with = cause
    with pytest.raises(ConnectionFailedError) as info:
        getattr(flow, method)(*args)
    assert conn.calls == [("encoder_failed", cause)]
    assert info.value.__cause__ is cause


@pytest.mark.parametrize("method, args", [
    ("send", (C.KeepAlive(),)), ("append", ("x",)), ("append_event", ("s", WRITER, 1, b"", 1))])
def test_a_closed_or_failed_flow_refuses_with_a_typed_error(core, method, args):
    conn = Conn(core)
    flow = conn.add(1, Listener([], "a"))
    flow._conn = None
    with pytest.raises(ConnectionClosedError, match="flow 1 is closed"):
        getattr(flow, method)(*args)
    lost = ConnectionFailedError("reset by peer")
    flow._error = lost
    with pytest.raises(ConnectionFailedError, match="reset by peer") as info:
        getattr(flow, method)(*args)
    assert info.value is not lost and info.value.__cause__ is lost
    flow._error = OSError("odd")
    with pytest.raises(ConnectionFailedError, match="odd"):
        getattr(flow, method)(*args)
    assert conn._encoder.written == conn._encoder.appended == conn._encoder.events == []

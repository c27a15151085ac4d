"""The ``pravega-wire`` command fails cleanly: a bad option value, an occupied port, a controller
that is unreachable or named with a scheme it does not speak, a missing grpcio — each is one line
on stderr and a non-zero exit status, never a traceback. Plus ``--version`` and the package
logger's NullHandler."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import socket
import subprocess
import sys

import pytest

import pravega_wire
from pravega_wire.cli import main

CLI = [sys.executable, "-m", "pravega_wire.cli"]


def _run(args, timeout=120, **kwargs):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def _one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def _listener(reuse_port: bool) -> socket.socket:
    """A socket listening on a free loopback port; with SO_REUSEPORT, as gRPC servers bind."""
    sock = socket.socket()
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- --version and option values ----------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pravega-wire {pravega_wire.__version__} ")
    assert f"({pravega_wire.IMPLEMENTATION} codec" in out
    # One source for the version: the installed metadata is read from the package.
    assert importlib.metadata.version("pravega-wire") == pravega_wire.__version__


@pytest.mark.parametrize("argv, message", [
    (["serve", "--controller-port", "abc"],
     "argument --controller-port: expected a port number (0-65535), not 'abc'"),
    (["serve", "--controller-port", "70000"],
     "argument --controller-port: expected a port number (0-65535), not 70000"),
    (["serve", "--store-port", "-1"],
     "argument --store-port: expected a port number (0-65535), not -1"),
    (["serve", "--stores", "two"],
     "argument --stores: expected a whole number of at least 1, not 'two'"),
    (["serve", "--stores", "0"], "argument --stores: must be at least 1, not 0"),
    (["serve", "--read-wait", "soon"],
     "argument --read-wait: expected a positive number, not 'soon'"),
    (["serve", "--read-wait", "0"], "argument --read-wait: must be positive, not 0"),
])
def test_bad_option_values_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "invalid" not in err  # not argparse's "invalid _port value"


# ---- serve --------------------------------------------------------------------------------------

@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_serve_refuses_an_occupied_controller_port(reuse_port):
    with _listener(reuse_port) as taken:
        port = taken.getsockname()[1]
        result = _run(["serve", "--stores", "1", "--controller-port", str(port)])
    line = _one_line_error(result, f"--controller-port {port}", "in use")
    assert line.startswith("pravega-wire serve: ")
    assert result.stdout == ""  # nothing started, so no endpoints were announced


def test_serve_refuses_an_occupied_store_port():
    with _listener(False) as taken:
        port = taken.getsockname()[1]
        result = _run(["serve", "--stores", "1", "--no-controller", "--store-port", str(port)])
    _one_line_error(result, "pravega-wire serve: ", str(port))
    assert result.stdout == ""


def test_embedded_controller_does_not_share_a_port():
    """gRPC would bind a port another SO_REUSEPORT socket listens on; the controller refuses."""
    from pravega_wire.server.controller import EmbeddedController

    async def start(port):
        controller = EmbeddedController([("127.0.0.1", 1)], port=port)
        try:
            await controller.start()
        finally:
            await controller.stop()

    with _listener(True) as taken:
        with pytest.raises(OSError, match="could not bind"):
            asyncio.run(start(taken.getsockname()[1]))


# ---- demo ---------------------------------------------------------------------------------------

SMALL_DEMO = ["--segments", "4", "--writers", "2", "--readers", "2", "--events", "400",
              "--stores", "1", "--max-connections", "1", "--quiet"]


def test_demo_refuses_a_controller_uri_it_cannot_speak():
    result = _run(["demo", "--controller", "http://127.0.0.1:9090", "--quiet"])
    _one_line_error(result, "pravega-wire demo: ", "'http'")


def test_demo_reports_an_unreachable_controller():
    port = _free_port()
    result = _run(["demo", "--controller", f"tcp://127.0.0.1:{port}", "--quiet"])
    _one_line_error(result, "pravega-wire demo: ", f"127.0.0.1:{port}", "UNAVAILABLE")


def test_demo_without_grpcio_says_what_is_missing():
    code = ("import sys; sys.modules['grpc'] = None\n"  # makes `import grpc` fail
            "from pravega_wire.cli import main\n"
            f"sys.exit(main(['demo', *{SMALL_DEMO!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    _one_line_error(result, "pravega-wire demo: ", "grpc")


def test_demo_against_a_served_controller_names_it():
    """``demo --controller URI`` against ``pravega-wire serve`` (run by ChildCluster, which
    waits a bounded time for the endpoints it prints): the report says where it ran (it used
    to say "on None stores") and the JSON says the number of stores is unknown."""
    from pravega_wire.server.cluster import ChildCluster

    cluster = ChildCluster(1).start()
    try:
        uri = cluster.controller_uri
        report = _run(["demo", "--controller", uri, "--scope", "cli", *SMALL_DEMO])
        assert report.returncode == 0, report.stderr
        assert f"via the controller at {uri}" in report.stdout
        assert "None" not in report.stdout
        assert "integrity           OK" in report.stdout
        result = _run(["demo", "--controller", uri, "--scope", "cli", "--json", *SMALL_DEMO])
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["stores"] is None and data["integrity_ok"] is True
    finally:
        cluster.stop()
    assert cluster.stats.get(0)  # it shut down cleanly: it wrote the store's command counts


# ---- logging ------------------------------------------------------------------------------------

def test_package_logger_has_a_null_handler():
    handlers = logging.getLogger("pravega_wire").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_library_warnings_are_silent_until_the_application_configures_logging():
    code = ("import logging, pravega_wire\n"
            "logging.getLogger('pravega_wire.pool').warning('a library warning')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stderr == ""  # without the NullHandler, logging's last resort prints it

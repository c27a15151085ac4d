"""The main job: ``pravega-wire demo --json`` runs end to end (embedded cluster in a child
process), verifies every event, and reports the fields the README promises."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


REQUIRED = {"events_written", "events_read", "write_events_per_s", "read_mb_per_s",
            "ack_latency_ms_p50", "ack_latency_ms_p99", "client_sockets_opened", "segments",
            "stores", "integrity_ok"}


@pytest.mark.parametrize("pooling", ["--pooling", "--no-pooling"])
def test_demo_json(pooling):
    result = subprocess.run(
        [sys.executable, "-m", "pravega_wire.cli", "demo", "--json", "--quiet", pooling,
         "--segments", "16", "--writers", "4", "--readers", "2", "--events", "6000",
         "--stores", "2", "--max-connections", "2"],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert REQUIRED <= set(report)
    assert report["integrity_ok"] is True
    assert report["events_written"] == report["events_read"] == 6000
    assert report["segments"] == 16 and report["stores"] == 2
    assert report["write_events_per_s"] > 0 and report["ack_latency_ms_p99"] >= \
        report["ack_latency_ms_p50"] >= 0
    if pooling == "--pooling":  # at most the cap per store, far fewer than one per segment
        assert report["client_sockets_opened"] <= 2 * 2
        assert report["client_sockets_opened"] < report["sockets_one_per_segment"]
    else:  # one dedicated socket per segment writer, plus the readers' pooled ones
        assert report["client_sockets_opened"] >= report["segment_writers"]


def test_demo_rejects_bad_options():
    result = subprocess.run([sys.executable, "-m", "pravega_wire.cli", "demo", "--segments", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--segments" in result.stderr

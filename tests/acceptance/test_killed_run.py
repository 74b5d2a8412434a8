"""A run killed with SIGKILL halfway leaves hlog and timeline files that read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadlab.metrics.hlog import read_hlog
from loadlab.metrics.timeline import read_timeline

from .helpers import capacity_server

pytestmark = [pytest.mark.realtime, pytest.mark.slow]

WAIT_FOR_ROWS_S = 30.0


def test_sigkill_halfway_leaves_readable_timeline_and_hlogs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with capacity_server(slots=50, service_ms=5, queue=100) as url:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "loadlab", "run", "http-knee", "--api", url),
                *("--out", str(out), "--quiet"),
                *("--set", "load.ramp.step_s=30", "--set", "load.ramp.start_per_s=300"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + WAIT_FOR_ROWS_S
            timeline = out / "timeline.csv"
            # Wait (bounded) until a few interval rows are on disk, then kill without warning.
            while time.monotonic() < deadline:
                if timeline.exists() and len(timeline.read_text().splitlines()) >= 4:
                    break
                time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    rows = read_timeline(out / "timeline.csv")
    assert len(rows) >= 3
    assert any((row.get("api_sent_per_s") or 0) > 0 for row in rows)
    intervals = read_hlog(out / "api.hlog")
    assert intervals, "the corrected hlog holds no complete interval"
    assert sum(h.get_total_count() for _, _, _, h in intervals) > 0
    assert read_hlog(out / "api.uncorrected.hlog")

"""The knee of an HTTP server of known capacity agrees with what wrk measures on it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import FAST_RAMP, capacity_server, loadlab, read_summary

pytestmark = [pytest.mark.slow, pytest.mark.realtime, pytest.mark.needs_wrk]

SLOTS, SERVICE_MS, QUEUE = 40, 20.0, 200  # 2,000 req/s by construction


def wrk_capacity(url: str, duration_s: int = 5) -> float:
    """Successful requests per second, with fewer connections than slots + queue (no 429s)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{SLOTS * 2}", f"-d{duration_s}s", url],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    secs = float(re.search(r"requests in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    ok = total - (int(non2xx.group(1)) if non2xx else 0)
    return ok / secs


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing (make test installs it)")
def test_http_knee_is_within_ten_percent_of_wrk_capacity(tmp_path: Path) -> None:
    with capacity_server(SLOTS, SERVICE_MS, QUEUE) as url:
        reference = wrk_capacity(url)
        result = loadlab(
            "run",
            "http-knee",
            "--api",
            url,
            "--out",
            str(tmp_path / "run"),
            "--set",
            "load.ramp.start_per_s=500",
            "--set",
            # 1.3x the capacity: the search brackets the knee in fewer halvings.
            "load.ramp.max_per_s=2600",
            *FAST_RAMP,
            timeout_s=180,
        )
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "run")
    knee = summary["knee"]["api"]
    assert knee is not None, summary["steps"]
    assert knee["offered"] == pytest.approx(reference, rel=0.10), (reference, summary["steps"])
    # Above the knee the server shed load with 429s or queued past the SLO: the reason says which.
    assert knee["reason"] != "ok"
    assert summary["generator"]["limited"] is False

"""The DNS knee of a real unbound with ip-ratelimit is the configured limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadlab.testing.unbound import running_unbound, unbound_available

from .helpers import FAST_RAMP, loadlab, read_summary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realtime,
    pytest.mark.needs_unbound,
    pytest.mark.skipif(not unbound_available(), reason="unbound is not installed (make test does)"),
]

LIMIT_QPS = 1500


def test_dns_knee_finds_the_unbound_ratelimit_within_fifteen_percent(tmp_path: Path) -> None:
    # ip-ratelimit-factor 0: every query over the limit is dropped (no 1-in-10 let through).
    extra = [f"ip-ratelimit: {LIMIT_QPS}", "ip-ratelimit-factor: 0"]
    with running_unbound(tmp_path, extra_server_lines=extra) as unbound:
        result = loadlab(
            "run",
            "dns-knee",
            "--dns",
            unbound.addr,
            "--out",
            str(tmp_path / "run"),
            "--set",
            "load.ramp.start_per_s=400",
            *FAST_RAMP,
            timeout_s=180,
        )
    assert result.returncode == 0, result.stderr
    summary = read_summary(tmp_path / "run")
    knee = summary["knee"]["dns"]
    assert knee is not None, summary["steps"]
    assert knee["offered"] == pytest.approx(LIMIT_QPS, rel=0.15), summary["steps"]
    # Dropped queries show as timeouts, as queries still unanswered past their SLO when the step
    # is judged (in its p99), or as answers missing from the achieved rate: all the server's.
    reason = knee["reason"]
    assert any(word in reason for word in ("timeout", "unanswered", "achieved")), reason
    assert summary["generator"]["limited"] is False

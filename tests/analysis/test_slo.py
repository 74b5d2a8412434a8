"""SLO checks: thresholds against a window, and the summary's ``slo`` block."""

from __future__ import annotations

import json

from loadlab.analysis.slo import evaluate_slos

from .synthetic import make_stats


def test_every_threshold_becomes_a_check_and_one_failure_fails_the_run() -> None:
    api = make_stats(offered=100, error_rate=0.02, p99_by_op={"get-lease": 80.0, "list": 900.0})
    dns = make_stats(offered=1000, target="dns", error_rate=0.0, p99_by_op={"a": 3.0})
    report = evaluate_slos(
        [api, dns],
        max_error_rate={"api": 0.05, "dns": 0.001},
        p99_ms={"api/get-lease": 100.0, "api/list": 500.0, "dns/a": 10.0},
    )

    by_name = {c.name: c for c in report.checks}
    assert set(by_name) == {
        "api error_rate",
        "dns error_rate",
        "api/get-lease p99_ms",
        "api/list p99_ms",
        "dns/a p99_ms",
    }
    assert by_name["api error_rate"].passed
    assert by_name["api error_rate"].observed == 0.02
    assert by_name["api/get-lease p99_ms"].passed
    assert not by_name["api/list p99_ms"].passed
    assert by_name["api/list p99_ms"].observed == 900.0
    assert not report.passed


def test_all_checks_passing_pass_the_run_and_no_checks_pass_vacuously() -> None:
    api = make_stats(offered=100, p99_by_op={"get-lease": 80.0})
    assert evaluate_slos([api], max_error_rate={"api": 0.01}, p99_ms={"api/get-lease": 100}).passed
    assert evaluate_slos([api]).passed


def test_an_slo_on_traffic_that_never_ran_fails_with_no_observation() -> None:
    api = make_stats(offered=100, p99_by_op={"get-lease": 80.0})
    report = evaluate_slos([api], max_error_rate={"dns": 0.01}, p99_ms={"api/put-lease": 50.0})
    assert [(c.name, c.observed, c.passed) for c in report.checks] == [
        ("dns error_rate", None, False),
        ("api/put-lease p99_ms", None, False),
    ]


def test_slo_block_is_the_summary_shape_and_valid_json() -> None:
    api = make_stats(offered=100, p99_by_op={"get-lease": 80.0})
    block = evaluate_slos([api], p99_ms={"api/get-lease": 100.0, "api/nope": 1.0}).as_dict()
    text = json.dumps(block, allow_nan=False)
    assert json.loads(text) == {
        "passed": False,
        "checks": [
            {"name": "api/get-lease p99_ms", "threshold": 100.0, "observed": 80.0, "passed": True},
            {"name": "api/nope p99_ms", "threshold": 1.0, "observed": None, "passed": False},
        ],
    }

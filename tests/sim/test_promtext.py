"""Prometheus text format 0.0.4: exact text, escaping, and a parse of the whole sim registry."""

from __future__ import annotations

import math
import re

import pytest

from loadlab.clock import FakeClock
from loadlab.sim.overload.model import OverloadModel
from loadlab.sim.overload.parameters import OverloadConfig
from loadlab.sim.promtext import PromRegistry, format_value

# A sample line: name, optional {labels}, value (text format 0.0.4, no timestamps here).
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>\S+)$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Parse exposition text strictly enough to catch malformed output."""
    assert text.endswith("\n")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram"}
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"malformed sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, f"sample before its TYPE: {line!r}"
        labels = tuple(LABEL.findall(match["labels"] or ""))
        samples.setdefault(name, {})[labels] = float(match["value"])
    return samples


def test_counter_gauge_and_histogram_render_exactly() -> None:
    registry = PromRegistry()
    registry.counter("jobs_total", "Jobs done.", ("kind",)).inc("a", amount=2)
    registry.gauge("temperature_celsius", "Now.").set(21.5)
    hist = registry.histogram("wait_seconds", "Waits.", ("op",), buckets=(0.1, 1.0))
    hist.observe(0.05, "get")
    hist.observe(0.5, "get")
    hist.observe(3.0, "get")
    assert registry.render() == (
        "# HELP jobs_total Jobs done.\n"
        "# TYPE jobs_total counter\n"
        'jobs_total{kind="a"} 2\n'
        "# HELP temperature_celsius Now.\n"
        "# TYPE temperature_celsius gauge\n"
        "temperature_celsius 21.5\n"
        "# HELP wait_seconds Waits.\n"
        "# TYPE wait_seconds histogram\n"
        'wait_seconds_bucket{op="get",le="0.1"} 1\n'
        'wait_seconds_bucket{op="get",le="1"} 2\n'
        'wait_seconds_bucket{op="get",le="+Inf"} 3\n'
        'wait_seconds_sum{op="get"} 3.55\n'
        'wait_seconds_count{op="get"} 3\n'
    )


def test_label_values_and_help_are_escaped() -> None:
    registry = PromRegistry()
    registry.counter("odd_total", "Line one\nback\\slash", ("v",)).inc('say "hi"\\\n')
    text = registry.render()
    assert "# HELP odd_total Line one\\nback\\\\slash\n" in text
    assert 'odd_total{v="say \\"hi\\"\\\\\\n"} 1\n' in text
    assert parse(text)["odd_total"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(3.0, "3", id="integral"),
        pytest.param(0.25, "0.25", id="fraction"),
        pytest.param(math.inf, "+Inf", id="inf"),
        pytest.param(-math.inf, "-Inf", id="neg-inf"),
        pytest.param(math.nan, "NaN", id="nan"),
    ],
)
def test_values_are_formatted_like_prometheus(value: float, text: str) -> None:
    assert format_value(value) == text


def test_families_are_get_or_create_and_shapes_must_match() -> None:
    registry = PromRegistry()
    first = registry.counter("x_total", "X.", ("a",))
    assert registry.counter("x_total", "X.", ("a",)) is first
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("x_total", "X.", ("a",))
    with pytest.raises(ValueError, match="takes labels"):
        first.inc("a", "b")
    with pytest.raises(ValueError, match="cannot decrease"):
        first.inc("a", amount=-1)


def test_sim_registry_parses_and_carries_the_apiserver_metrics() -> None:
    model = OverloadModel(OverloadConfig(), FakeClock(), PromRegistry())
    model.observe_request("list", "pods", 200, 0.3)
    model.observe_request("list", "pods", 429, 0.001)
    model.event_loop_lag.set(0.002)
    samples = parse(model.metrics.render())
    for name in (
        "apiserver_current_inflight_requests",
        "apiserver_flowcontrol_current_inqueue_requests",
        "apiserver_flowcontrol_current_executing_seats",
        "apiserver_request_total",
        "apiserver_request_duration_seconds_bucket",
        "loadlab_sim_memory_bytes",
        "loadlab_sim_restarts_total",
        "loadlab_sim_event_loop_lag_seconds",
    ):
        assert name in samples, name
    # kube-apiserver's label names, in its order; unknown parts left empty.
    labels = (
        ("verb", "list"), ("dry_run", ""), ("group", ""), ("version", ""), ("resource", "pods"),
        ("subresource", ""), ("scope", ""), ("component", "apiserver"),
    )  # fmt: skip
    total = samples["apiserver_request_total"]
    assert total[(*labels, ("code", "429"))] == 1
    count = samples["apiserver_request_duration_seconds_count"]
    assert count[labels] == 2
    buckets = samples["apiserver_request_duration_seconds_bucket"]
    values = [v for labels, v in buckets.items()]
    assert values == sorted(values)  # cumulative
    assert buckets[(*labels, ("le", "0.005"))] == 1
    levels = samples["apiserver_flowcontrol_current_executing_seats"]
    assert len(levels) == 8  # one series per default priority level

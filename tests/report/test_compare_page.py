"""compare.html and compare.md from a hand-built comparison, and ``--threshold`` parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadlab.errors import UsageError
from loadlab.report.compare import Capacity, Comparison, knee_row, latency_row, size_row
from loadlab.report.compare_page import (
    compare_html,
    compare_markdown,
    default_out,
    p99_ratio_png,
    parse_threshold,
    terminal_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("10%", 0.10), ("10 %", 0.10), ("0.1", 0.10), (" 2.5% ", 0.025), ("0", 0.0), ("99%", 0.99)],
    ids=["percent", "percent-spaced", "fraction", "decimal-percent", "zero", "just-below-100"],
)
def test_a_threshold_is_a_percentage_or_a_fraction(text: str, fraction: float) -> None:
    assert parse_threshold(text) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-5%", "not negative"),
        ("-0.1", "not negative"),
        ("100%", "below 100 %"),
        ("10", "write 10%"),
        ("ten", "expected a percentage"),
        ("10%%", "expected a percentage"),
        ("", "expected a percentage"),
        ("nan", "expected a percentage"),
    ],
    ids=["negative-percent", "negative", "hundred", "bare-ten", "word", "double", "empty", "nan"],
)
def test_a_bad_threshold_is_one_usage_line(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_threshold(text)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message


def _ramp_comparison() -> Comparison:
    tight = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8]
    latency = (
        latency_row("api", "get-lease", "p99", tight, [2 * v for v in tight], threshold=0.1),
        latency_row("api", "put-lease", "p99", tight, tight[::-1], threshold=0.1),
        latency_row("api", "list-node-pods", "p99", tight[:3], tight[:3], threshold=0.1),
    )
    knee = knee_row("api", Capacity(520.0), Capacity(4_100.0), tolerance=0.1, nodes=1000)
    return Comparison(
        Path("/r/default"),
        Path("/r/cheap"),
        "http-knee",
        "ramp",
        0.1,
        ("sim.config: (none) -> /tmp/cheap <b>.yaml",),
        knees=(knee,),
        latency=latency,
        latency_range="api: the steps at 100, 200/s",
    )


def test_the_page_holds_its_tables_its_picture_and_nothing_from_the_network() -> None:
    page = compare_html(_ramp_comparison())
    assert '<table id="knees">' in page
    assert '<table id="latency">' in page
    assert "compare: B regressed: api get-lease p99 2.0x" in page
    # The regressed row is marked, the undecided one says why.
    assert re.search(r'<tr class="fail"><td class="text">api</td><td class="text">get-lease', page)
    assert "too few intervals (3 in A, 3 in B" in page
    assert "/tmp/cheap &lt;b&gt;.yaml" in page  # what differs, escaped
    assert 'src="data:image/png;base64,' in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page


def test_the_markdown_says_the_same_as_the_page() -> None:
    comparison = _ramp_comparison()
    text = compare_markdown(comparison)
    assert f"**{comparison.headline()}**" in text
    assert "| api | 1,000 | 520/s | 4,100/s | 7.9x | improved |" in text
    assert "| api | get-lease | p99 | 10.0 | 20.0 | 2.0x |" in text
    assert "- `sim.config: (none) -> /tmp/cheap <b>.yaml`" in text


def test_the_terminal_shows_knees_and_only_the_latency_rows_that_moved() -> None:
    out = terminal_table(_ramp_comparison())
    assert "7.9x" in out
    assert "get-lease" in out
    assert "list-node-pods" in out  # no verdict is shown, never passed over
    assert "put-lease" not in out


def test_a_sweep_page_has_a_sizes_table() -> None:
    rows = (
        size_row(
            200, {"passed": True}, {"passed": False, "api_saturation_at_s": 30}, threshold=0.1
        ),
    )
    comparison = Comparison(Path("a"), Path("b"), "k", "sweep", 0.1, (), outcomes=rows)
    page = compare_html(comparison)
    assert '<table id="sizes">' in page
    assert '<table id="latency">' in page
    assert "A held, B failed (API at 30 s)" in page
    assert comparison.exit_code == 1


def test_the_picture_is_a_png_and_needs_a_p99_ratio() -> None:
    png = p99_ratio_png(_ramp_comparison().latency, 0.1)
    assert png is not None
    assert png.startswith(PNG_MAGIC)
    assert p99_ratio_png(_ramp_comparison().latency[2:], 0.1) is None


def test_the_default_output_sits_next_to_b(tmp_path: Path) -> None:
    a, b = tmp_path / "runs" / "default", tmp_path / "other" / "cheap"
    assert default_out(a, b) == tmp_path / "other" / "compare-default-vs-cheap"

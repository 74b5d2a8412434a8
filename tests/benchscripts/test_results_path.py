"""The side-by-side scripts' JSON documents: a second run on the same day keeps the first's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.sidebyside import default_results_path


def test_a_second_run_the_same_day_gets_its_own_file(tmp_path: Path) -> None:
    day = f"{datetime.now(UTC):%Y-%m-%d}"
    first = default_results_path("http", tmp_path)
    assert first == tmp_path / f"{day}-http.json"
    first.write_text("{}")
    second = default_results_path("http", tmp_path)
    assert second == tmp_path / f"{day}-http-2.json"
    second.write_text("{}")
    assert default_results_path("http", tmp_path) == tmp_path / f"{day}-http-3.json"
    assert default_results_path("dns", tmp_path) == tmp_path / f"{day}-dns.json"

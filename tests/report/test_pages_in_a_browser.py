"""The report and compare pages opened from disk in a real headless Chromium, as a reader would:
every image decodes, the tables are there, nothing is fetched from the network."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loadlab.report import write_report
from loadlab.report.compare_page import compare_command
from loadlab.testing.browser import PageReport, inspect_page

pytestmark = [pytest.mark.needs_chromium, pytest.mark.realtime, pytest.mark.slow]


def png_dimensions(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def check_page(page: PageReport, screenshot: Path, *, min_images: int) -> None:
    assert len(page.images) >= min_images, page.images
    assert page.all_images_decoded, page.undecoded_images
    assert all(image.is_data_uri for image in page.images)
    assert page.external_refs == ()
    assert page.failed_loads == ()
    width, height = png_dimensions(screenshot)
    assert width > 0
    assert height > 600  # the whole page, not one viewport's worth of an empty one


def test_a_sweep_report_renders_with_its_size_table_and_a_timeline_per_size(
    sweep_folder: Path, tmp_path: Path
) -> None:
    write_report(sweep_folder)
    shot = tmp_path / "report.png"
    page = inspect_page(sweep_folder / "report.html", screenshot=shot)
    summary = json.loads((sweep_folder / "summary.json").read_text())
    sizes = len(summary["sizes"])
    check_page(page, shot, min_images=sizes + 1)  # a timeline per size, the generator's health
    table = page.table("sizes")
    assert table.rows == sizes + 1  # the header and a row per size
    assert page.title.startswith("loadlab report: kubelet-baseline")


def test_a_ramp_report_renders_with_the_knee_plot(ramp_folder: Path, tmp_path: Path) -> None:
    write_report(ramp_folder)
    shot = tmp_path / "report.png"
    page = inspect_page(ramp_folder / "report.html", screenshot=shot)
    check_page(page, shot, min_images=3)  # latency and achieved per step, timeline, generator
    assert page.table("sizes").rows == 2


def test_the_compare_page_renders_with_its_tables(sweep_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    assert compare_command(sweep_run, sweep_run, threshold=0.1, out=out) == 0
    shot = tmp_path / "compare.png"
    page = inspect_page(out / "compare.html", screenshot=shot)
    assert page.all_images_decoded, page.undecoded_images
    assert page.external_refs == ()
    assert page.table("sizes").rows >= 2
    assert page.table("latency").rows >= 1

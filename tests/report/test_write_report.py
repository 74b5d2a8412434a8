"""``write_report`` on real results folders: the files, the embedded PNGs, no network, the
markdown table and the perfdash export."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadlab.errors import UsageError
from loadlab.report import report_command, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Attributes(HTMLParser):
    """Every src/href of a page, and every <img>'s src."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.references.append(value)
                if tag == "img":
                    self.images.append(value)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG must start with."""
    assert png[:8] == PNG_MAGIC
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def embedded_pngs(html: str) -> list[bytes]:
    page = Attributes()
    page.feed(html)
    for ref in page.references:  # only data: URIs; nothing a browser would fetch
        assert ref.startswith("data:"), ref[:80]
        assert "//" not in ref.split(",", 1)[0], ref[:80]
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in page.images)
    return [base64.b64decode(src[len(prefix) :], validate=True) for src in page.images]


def check_report(folder: Path, written: list[Path], figures: int) -> dict[str, Any]:
    """The checks every complete report passes; returns perfdash.json."""
    html = (folder / "report.html").read_text()
    plots = sorted((folder / "plots").glob("*.png"))
    assert set(written) == {
        folder / "report.html",
        folder / "summary.md",
        folder / "perfdash.json",
        *plots,
    }
    assert len(plots) == figures
    pngs = embedded_pngs(html)
    assert len(pngs) == figures
    assert sorted(pngs) == sorted(p.read_bytes() for p in plots)  # the same bytes, embedded
    for png in pngs:
        width, height = png_size(png)
        assert width == 1000
        assert 300 <= height <= 2000
    assert '<table id="sizes">' in html
    perf = json.loads((folder / "perfdash.json").read_text())
    assert set(perf) == {"version", "dataItems"}
    assert perf["version"] == "v1"
    assert perf["dataItems"]
    for item in perf["dataItems"]:
        assert set(item) == {"data", "unit", "labels"}
        assert item["unit"] == "ms"
        assert set(item["data"]) == {"Perc50", "Perc90", "Perc99"}
        assert all(v >= 0 for v in item["data"].values())
        assert item["data"]["Perc50"] <= item["data"]["Perc90"] <= item["data"]["Perc99"]
        assert set(item["labels"]) == {"Profile", "Size", "Target", "Operation", "Count"}
        assert all(isinstance(v, str) for v in item["labels"].values())
    return dict(perf)


def find_item(perf: dict[str, Any], **labels: str) -> dict[str, float]:
    found = [
        i["data"] for i in perf["dataItems"] if all(i["labels"][k] == v for k, v in labels.items())
    ]
    assert len(found) == 1, labels
    return dict(found[0])


@pytest.mark.realtime
def test_a_ramp_report_shows_the_knee_and_exports_the_summary_percentiles(
    ramp_folder: Path,
) -> None:
    written = write_report(ramp_folder)
    # One knee figure (the api target), the timeline, the generator's health.
    perf = check_report(ramp_folder, written, figures=3)
    summary = json.loads((ramp_folder / "summary.json").read_text())
    latency = summary["latency_ms"]["api/get-lease"]
    data = find_item(perf, Target="api", Operation="get-lease", Profile="http-knee")
    assert data == {"Perc50": latency["p50"], "Perc90": latency["p90"], "Perc99": latency["p99"]}

    html = (ramp_folder / "report.html").read_text()
    assert "knee" in html
    assert "generator:" in html
    md = (ramp_folder / "summary.md").read_text()
    assert "| size (nodes) | knee |" in md
    knee = summary["knee"]["api"]
    if knee is not None:  # the knee's rate is in the table
        assert f"api {knee['offered']:,.0f}/s" in md
    assert not re.search(r"</?[a-z][a-z0-9]*[ >]", md)  # no HTML tags in the terminal's copy


@pytest.mark.realtime
def test_a_sweep_report_has_a_row_and_a_timeline_per_size(sweep_folder: Path) -> None:
    written = write_report(sweep_folder)
    # One timeline per size (20, 40) and the generator's health.
    perf = check_report(sweep_folder, written, figures=3)
    summary = json.loads((sweep_folder / "summary.json").read_text())
    ops = summary["sizes"][1]["agents"]["kubelet"]["ops"]["lease-renew"]
    data = find_item(perf, Size="40", Target="kubelet", Operation="lease-renew")
    assert data == {"Perc50": ops["p50"], "Perc90": ops["p90"], "Perc99": ops["p99"]}

    html = (sweep_folder / "report.html").read_text()
    sizes_table = html.split('<table id="sizes">', 1)[1].split("</table>", 1)[0]
    assert sizes_table.count("<tr") == 3  # the header and one row per size
    md = (sweep_folder / "summary.md").read_text()
    assert "\n| 20 |" in md
    assert "\n| 40 |" in md


@pytest.mark.realtime
def test_a_report_rerun_replaces_its_own_outputs(
    sweep_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_report(sweep_folder)
    first = (sweep_folder / "report.html").read_bytes()
    stale = sweep_folder / "plots" / "timeline-size-999.png"
    stale.write_bytes(b"left over")
    assert report_command(sweep_folder) == 0
    assert capsys.readouterr().out == f"report: {sweep_folder / 'report.html'}\n"
    assert not stale.exists()
    assert (sweep_folder / "report.html").read_bytes() == first  # same data, same bytes
    assert not list(sweep_folder.rglob("*.tmp"))


@pytest.mark.realtime
def test_a_killed_run_gets_a_report_that_claims_nothing(ramp_folder: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    shutil.copytree(ramp_folder, killed)
    (killed / "summary.json").unlink()
    write_report(killed)
    html = (killed / "report.html").read_text()
    assert "incomplete run: nothing is claimed" in html
    assert "incomplete" in html.split('<table id="sizes">', 1)[1].split("</table>", 1)[0]
    assert len(embedded_pngs(html)) == 3  # the files still allow every figure
    assert json.loads((killed / "perfdash.json").read_text()) == {"version": "v1", "dataItems": []}
    assert "incomplete run: nothing is claimed" in (killed / "summary.md").read_text()


def test_a_report_of_junk_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a loadlab results folder"):
        write_report(tmp_path)
    assert list(tmp_path.iterdir()) == []

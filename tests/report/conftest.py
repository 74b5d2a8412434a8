"""The report tests' copies of the shared runs (``tests/shared_runs.py``): each test gets its own
copy without any report in it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadlab.report import PERFDASH_JSON, PLOTS_DIR, REPORT_HTML, SUMMARY_MD

REPORT_OUTPUTS = (REPORT_HTML, SUMMARY_MD, PERFDASH_JSON, PLOTS_DIR)
"""What ``loadlab report`` writes: removed from the copies the tests use, so a test sees only
what its own call wrote (``loadlab run`` may write a report of its own at its end)."""


def fresh_copy(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst`` without any report in it."""
    shutil.copytree(src, dst)
    for name in REPORT_OUTPUTS:
        path = dst / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return dst


@pytest.fixture
def ramp_folder(ramp_run: Path, tmp_path: Path) -> Path:
    return fresh_copy(ramp_run, tmp_path / "ramp")


@pytest.fixture
def sweep_folder(sweep_run: Path, tmp_path: Path) -> Path:
    return fresh_copy(sweep_run, tmp_path / "sweep")

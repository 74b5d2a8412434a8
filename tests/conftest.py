"""Session fixtures every test folder may use: the shared real runs (``tests/shared_runs.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_runs import RAMP_ARGS, SWEEP_ARGS, RunResult, run_loadlab


@pytest.fixture(scope="session")
def ramp_result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_loadlab(tmp_path_factory.mktemp("ramp") / "run", *RAMP_ARGS)


@pytest.fixture(scope="session")
def sweep_result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_loadlab(tmp_path_factory.mktemp("sweep") / "run", *SWEEP_ARGS)


@pytest.fixture(scope="session")
def ramp_run(ramp_result: RunResult) -> Path:
    return ramp_result.out


@pytest.fixture(scope="session")
def sweep_run(sweep_result: RunResult) -> Path:
    return sweep_result.out

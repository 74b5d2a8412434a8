"""The sim as a subprocess (how the generator starts it) and its configuration surface."""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

import pytest

from loadlab.errors import ProfileError, TargetUnreachable
from loadlab.sim.cli import add_sim_arguments, config_from_args
from loadlab.sim.config import load_sim_config
from loadlab.sim.process import start_sim_process


@pytest.mark.realtime
def test_sim_process_reports_where_it_listens_serves_nodes_and_stops_on_sigterm() -> None:
    with start_sim_process(["--nodes", "3", "--pods-per-node", "2"], timeout_s=60) as sim:
        with urllib.request.urlopen(f"{sim.api_url}/api/v1/nodes", timeout=10) as resp:
            nodes = json.load(resp)["items"]
        assert sim.api_url.startswith("http://127.0.0.1:")
        assert [n["metadata"]["name"] for n in nodes] == ["node-0", "node-1", "node-2"]
        code = sim.stop()
    assert code == 0


@pytest.mark.realtime
def test_sim_process_that_cannot_start_raises_target_unreachable_with_its_error(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "sim.yaml"
    bad.write_text("nodes: -1\n")
    with pytest.raises(TargetUnreachable, match="nodes"):
        start_sim_process(["--config", str(bad)], timeout_s=60)


def test_command_line_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("nodes: 7\npods_per_node: 4\noverload:\n  total_seats: 100\n")
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    config = config_from_args(
        parser.parse_args(["--config", str(path), "--nodes", "9", "--api-port", "0"])
    )
    assert (config.nodes, config.pods_per_node, config.api_port) == (9, 4, 0)
    assert config.overload.total_seats == 100


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("nodes: lots\n", "nodes", id="bad-type"),
        pytest.param("overload:\n  total_seats: 0\n", "overload.total_seats", id="nested"),
        pytest.param("nodez: 3\n", "nodez", id="unknown-field"),
        pytest.param("- 1\n", "mapping", id="not-a-mapping"),
    ],
)
def test_bad_sim_config_is_a_profile_error_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=field):
        load_sim_config(path)

"""Who the sim takes a request for: with ``--tokens`` alone (plain HTTP), and without tokens (the
bearer token is the user name); and the command-line rules of the access flags."""

from __future__ import annotations

import argparse
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadlab.errors import UsageError
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.cli import SLOW_DOWN_HELP, access_from_args, add_sim_arguments
from loadlab.sim.credentials import write_private
from loadlab.sim.process import start_sim_process
from tests.sim.conftest import RunWithApi
from tests.sim.secured import REVIEW, REVIEW_PATH, call, read_token_file, token_of


@pytest.mark.realtime
def test_tokens_without_tls_refuse_strangers_and_serve_nodes_over_plain_http(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.csv"
    args = ["--nodes", "4", "--tokens", "--tokens-out", str(tokens)]
    with start_sim_process(args, timeout_s=60) as sim:
        node = token_of(read_token_file(tokens), "system:node:node-2")
        refused = call(f"{sim.api_url}/api/v1/nodes")
        as_name = call(f"{sim.api_url}/api/v1/nodes", token="system:node:node-2")
        served = call(f"{sim.api_url}/api/v1/nodes/node-2", token=node)
        review = call(f"{sim.api_url}{REVIEW_PATH}", token=node, method="POST", data=REVIEW)
    assert sim.api_url.startswith("http://127.0.0.1:")
    assert (sim.kubeconfig, sim.tokens_file) == (None, str(tokens))
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert (refused.status, as_name.status) == (401, 401)
    assert served.status == 200
    assert review.json()["status"]["userInfo"]["username"] == "system:node:node-2"


@pytest.mark.realtime
@pytest.mark.parametrize(
    ("headers", "user", "groups"),
    [
        pytest.param(
            {"Authorization": "Bearer system:node:node-3"},
            "system:node:node-3",
            ["system:authenticated", "system:nodes"],
            id="node-name-as-token",
        ),
        pytest.param({}, "system:anonymous", ["system:unauthenticated"], id="no-token"),
        pytest.param(
            {"Authorization": "Bearer loadlab-admin", "Impersonate-User": "alice"},
            "alice",
            ["system:authenticated"],
            id="impersonated",
        ),
    ],
)
def test_without_tokens_the_bearer_token_is_the_user_name(
    run_with_api: RunWithApi, headers: dict[str, str], user: str, groups: list[str]
) -> None:
    seen: list[Any] = []

    async def body(api: SimApiServer) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{api.url}{REVIEW_PATH}", json=REVIEW, headers=headers) as resp,
        ):
            seen.append((resp.status, await resp.json()))

    run_with_api(body)
    [(status, review)] = seen
    assert status == 201
    assert review["status"]["userInfo"]["username"] == user
    assert review["status"]["userInfo"]["groups"] == groups


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("--kubeconfig-out", "k"), "--kubeconfig-out needs --tls", id="kc-no-tls"),
        pytest.param(
            ("--tokens", "--kubeconfig-out", "k"), "--kubeconfig-out needs --tls", id="kc-tokens"
        ),
        pytest.param(("--tokens-out", "t"), "--tokens-out needs --tokens", id="tokens-out-alone"),
    ],
)
def test_access_flags_that_cannot_work_are_a_usage_error(
    argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        access_from_args(parse(*argv))


def test_tls_implies_tokens_and_allows_both_files() -> None:
    access = access_from_args(parse("--tls", "--kubeconfig-out", "k", "--tokens-out", "t"))
    assert access.needs_tokens
    assert (access.kubeconfig_out, access.tokens_out) == (Path("k"), Path("t"))


def test_help_documents_the_slow_down() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert " ".join(SLOW_DOWN_HELP.split()) in text
    assert "SIGUSR1" in text
    assert "degrade.extra_latency_s" in text


def test_a_kubeconfig_the_folder_cannot_take_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot write the kubeconfig to .*missing"):
        write_private(tmp_path / "missing" / "kubeconfig", "x", what="kubeconfig")


@pytest.mark.realtime
def test_python_m_loadlab_sim_refuses_kubeconfig_out_without_tls_in_one_line(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadlab.sim", "--kubeconfig-out", str(tmp_path / "k")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "loadlab sim: --kubeconfig-out needs --tls: the kubeconfig names the CA the sim makes "
        "for HTTPS"
    ]
    assert not (tmp_path / "k").exists()

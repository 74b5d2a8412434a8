"""Kubeconfigs resolved to a ClusterAccess: real files, real certificates, a real exec plugin.

Nothing here connects anywhere (the HTTPS tests are in test_cluster_tls.py); what is checked is
what loadlab would connect with: the server URL, the TLS context's trust and the header.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadlab.errors import UsageError
from loadlab.targets.cluster import ClusterAccess, load_kubeconfig
from loadlab.targets.credentials import REFRESH_MARGIN
from loadlab.testing.cli_output import assert_one_clear_line
from tests.targets.pki import CertificateAuthority, b64, kubeconfig

SERVER = "https://127.0.0.1:6443"
EXEC_API = "client.authentication.k8s.io/v1"
EXPIRY = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)

EXEC_PLUGIN = """
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
if sys.argv[3] == "fail":
    print("opening the browser for login", file=sys.stderr)
    print("error: token expired, run login", file=sys.stderr)
    sys.exit(1)
status = {"token": f"exec-token-{n}", "expirationTimestamp": sys.argv[2]}
print(json.dumps({"apiVersion": "API", "kind": "ExecCredential", "status": status}))
""".replace("API", EXEC_API)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("loadlab-test-ca")


def load(path: Path | None, context: str | None = None, **kwargs: Any) -> ClusterAccess:
    return asyncio.run(load_kubeconfig(path, context, **kwargs))


def refused(path: Path | None, context: str | None = None, **kwargs: Any) -> str:
    with pytest.raises(UsageError) as caught:
        load(path, context, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def trusted_subjects(access: ClusterAccess) -> list[str]:
    """The common names of the CAs the access's TLS context trusts."""
    assert access.ssl is not None
    certs: list[Any] = access.ssl.get_ca_certs()
    return [
        value
        for cert in certs
        for rdn in cert["subject"]
        for key, value in rdn
        if key == "commonName"
    ]


def exec_user(tmp_path: Path, expiry: str, mode: str = "ok") -> dict[str, Any]:
    script = tmp_path / "plugin.py"
    script.write_text(EXEC_PLUGIN)
    runs = tmp_path / "runs"
    return {
        "exec": {
            "apiVersion": EXEC_API,
            "command": sys.executable,
            "args": [str(script), str(runs), expiry, mode],
        }
    }


def plugin_runs(tmp_path: Path) -> int:
    runs = tmp_path / "runs"
    return int(runs.read_text()) if runs.exists() else 0


@pytest.mark.parametrize("as_data", [False, True], ids=["ca-file", "ca-data"])
def test_token_user_with_a_ca_gives_a_verifying_context_and_the_token(
    tmp_path: Path, ca: CertificateAuthority, as_data: bool
) -> None:
    if as_data:
        cluster = {"certificate-authority-data": b64(ca.pem)}
    else:
        (tmp_path / "ca.crt").write_bytes(ca.pem)
        cluster = {"certificate-authority": "ca.crt"}  # relative to the kubeconfig's folder
    path = kubeconfig(
        tmp_path / "config", server=SERVER + "/", cluster=cluster, user={"token": "s3cret"}
    )
    access = load(path)
    assert (access.server, access.context) == (SERVER, "test")
    assert access.source == f"context test ({path})"
    assert access.credentials.authorization(None) == "Bearer s3cret"
    assert access.credentials.authorization("system:node:node-1") == "Bearer s3cret"
    assert access.ssl is not None
    assert (access.ssl.verify_mode, access.ssl.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert trusted_subjects(access) == ["loadlab-test-ca"]  # the kubeconfig's CA, and only it


def test_token_file_of_the_user_is_read(tmp_path: Path, ca: CertificateAuthority) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    path = kubeconfig(
        tmp_path / "config",
        server=SERVER,
        cluster={"certificate-authority-data": b64(ca.pem)},
        user={"tokenFile": str(tmp_path / "token")},
    )
    assert load(path).credentials.authorization(None) == "Bearer from-a-file"


def test_without_a_ca_the_system_store_is_trusted(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server=SERVER, user={"token": "t"})
    access = load(path)
    assert access.ssl is not None
    assert access.ssl.verify_mode == ssl.CERT_REQUIRED
    assert "loadlab-test-ca" not in trusted_subjects(access)


def test_plain_http_server_has_no_tls_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server="http://127.0.0.1:8080", user={"token": "t"})
    access = load(path)
    assert (access.server, access.ssl) == ("http://127.0.0.1:8080", None)


def test_localhost_is_mapped_and_the_certificate_still_checked_for_localhost(
    tmp_path: Path,
) -> None:
    path = kubeconfig(tmp_path / "config", server="https://localhost:6443")
    access = load(path)
    assert (access.server, access.tls_server_name) == ("https://127.0.0.1:6443", "localhost")


def test_tls_server_name_of_the_cluster_is_kept(tmp_path: Path) -> None:
    cluster = {"tls-server-name": "kubernetes.default"}
    path = kubeconfig(tmp_path / "config", server=SERVER, cluster=cluster)
    assert load(path).tls_server_name == "kubernetes.default"


def test_client_certificate_user_has_no_header(tmp_path: Path, ca: CertificateAuthority) -> None:
    cert, key = ca.client("alice").write(tmp_path, "alice")
    path = kubeconfig(
        tmp_path / "config",
        server=SERVER,
        cluster={"certificate-authority-data": b64(ca.pem)},
        user={"client-certificate": str(cert), "client-key": str(key)},
    )
    access = load(path)
    assert access.credentials.authorization(None) is None  # the certificate authenticates


def test_a_client_key_that_does_not_match_is_one_line(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    alice = ca.client("alice")
    bob = ca.client("bob")
    path = kubeconfig(
        tmp_path / "config",
        server=SERVER,
        user={"client-certificate-data": b64(alice.cert_pem), "client-key-data": b64(bob.key_pem)},
    )
    message = refused(path)
    assert message.startswith(f"kubeconfig {path}, context test: cannot use client-certificate")


def test_exec_plugin_token_is_used_and_renewed_only_near_its_expiry(tmp_path: Path) -> None:
    user = exec_user(tmp_path, EXPIRY.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path = kubeconfig(tmp_path / "config", server=SERVER, user=user)

    async def main() -> None:
        access = await load_kubeconfig(path, None)
        creds = access.credentials
        assert (creds.authorization(None), plugin_runs(tmp_path)) == ("Bearer exec-token-1", 1)
        early = EXPIRY - REFRESH_MARGIN - datetime.timedelta(seconds=1)
        assert not await creds.refresh(early)
        assert (plugin_runs(tmp_path), creds.generation) == (1, 0)
        late = EXPIRY - REFRESH_MARGIN + datetime.timedelta(seconds=1)
        assert await creds.refresh(late)
        assert (creds.authorization(None), plugin_runs(tmp_path)) == ("Bearer exec-token-2", 2)
        assert creds.generation == 1

    asyncio.run(main())


def test_exec_plugin_token_already_expired_is_renewed_on_the_wall_clock(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "config", server=SERVER, user=exec_user(tmp_path, "2001-01-01T00:00:00Z")
    )

    async def main() -> None:
        creds = (await load_kubeconfig(path, None)).credentials
        assert await creds.refresh()
        assert creds.authorization(None) == "Bearer exec-token-2"

    asyncio.run(main())


def test_exec_plugin_failure_is_the_last_line_of_its_stderr(tmp_path: Path) -> None:
    user = exec_user(tmp_path, "2031-01-01T00:00:00Z", mode="fail")
    path = kubeconfig(tmp_path / "config", server=SERVER, user=user)
    assert refused(path) == (
        f"kubeconfig {path}, context test: exec credential plugin failed (exit 1): "
        "error: token expired, run login"
    )


def test_exec_plugin_failure_prints_nothing_but_the_error(tmp_path: Path) -> None:
    # In a process of its own: pytest captures log records, so only there would the library's
    # log line reach stderr (Python's last-resort handler) beside loadlab's one line.
    user = exec_user(tmp_path, "2031-01-01T00:00:00Z", mode="fail")
    path = kubeconfig(tmp_path / "config", server=SERVER, user=user)
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from loadlab.errors import UsageError\n"
        "from loadlab.targets.cluster import load_kubeconfig\n"
        "try:\n"
        "    asyncio.run(load_kubeconfig(Path(sys.argv[1]), None))\n"
        "except UsageError as exc:\n"
        "    print(f'loadlab: {exc}', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert "token expired, run login" in assert_one_clear_line(done.stderr)


def test_exec_plugin_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": EXEC_API, "command": str(tmp_path / "no-such-plugin")}}
    path = kubeconfig(tmp_path / "config", server=SERVER, user=user)
    assert "no-such-plugin: no such file" in refused(path)


def test_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server=SERVER, extra_contexts=("staging",))
    assert refused(path, "prod-eu") == (
        f"kubeconfig {path}: no context 'prod-eu'; it has: test, staging"
    )


def test_unlisted_context_is_refused_before_its_plugin_runs(tmp_path: Path) -> None:
    user = exec_user(tmp_path, "2031-01-01T00:00:00Z")
    path = kubeconfig(tmp_path / "config", server=SERVER, user=user)
    message = refused(path, allow_contexts=["other"])
    assert message.startswith("context test: not allowlisted; pass --allow-context test")
    assert plugin_runs(tmp_path) == 0


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        pytest.param({"certificate-authority": "missing.crt"}, "missing.crt", id="ca-missing"),
        pytest.param(
            {"certificate-authority-data": b64(b"not a certificate")},
            "cannot use certificate-authority",
            id="ca-not-pem",
        ),
        pytest.param(
            {"proxy-url": "http://127.0.0.1:3128"}, "proxy-url is not supported", id="proxy"
        ),
    ],
)
def test_unusable_cluster_settings_are_one_line_naming_file_and_context(
    tmp_path: Path, cluster: dict[str, Any], expected: str
) -> None:
    path = kubeconfig(tmp_path / "config", server=SERVER, cluster=cluster)
    message = refused(path)
    assert message.startswith(f"kubeconfig {path}, context test: ")
    assert expected in message


def test_a_cluster_without_server_is_refused(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server="")
    assert refused(path) == f"kubeconfig {path}, context test: cluster 'c' has no server"


@pytest.mark.parametrize(
    ("server", "allowed"),
    [("https://127.0.0.1:6443", True), ("https://192.0.2.1:6443", False)],
    ids=["loopback", "test-net"],
)
def test_insecure_skip_tls_verify_is_honoured_on_loopback_only(
    tmp_path: Path, server: str, allowed: bool
) -> None:
    path = kubeconfig(
        tmp_path / "config", server=server, cluster={"insecure-skip-tls-verify": True}
    )
    if not allowed:
        assert "skips TLS verification only on loopback, not for 192.0.2.1" in refused(path)
        return
    access = load(path)
    assert access.ssl is not None
    assert (access.ssl.verify_mode, access.ssl.check_hostname) == (ssl.CERT_NONE, False)


def test_missing_file_and_not_yaml_are_one_line(tmp_path: Path) -> None:
    assert refused(tmp_path / "nope") == f"kubeconfig {tmp_path / 'nope'}: no such file"
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    assert refused(bad).startswith(f"kubeconfig {bad}: not YAML")


def test_kubeconfig_env_merges_files_as_kubectl_does(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    first = kubeconfig(tmp_path / "first", server="https://127.0.0.1:1111", context="a")
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    (second_dir / "ca.crt").write_bytes(ca.pem)
    second = second_dir / "config"
    second.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:9999"}},
                    {
                        "name": "c2",
                        "cluster": {
                            "server": "https://127.0.0.1:2222",
                            "certificate-authority": "ca.crt",
                        },
                    },
                ],
                "users": [{"name": "u2", "user": {"token": "second"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c2", "user": "u2"}},
                    {"name": "b", "context": {"cluster": "c2", "user": "u2"}},
                ],
                "current-context": "b",
            }
        )
    )
    environ = {"KUBECONFIG": f"{first}:{tmp_path / 'absent'}:{second}"}
    # The first file's current-context and its own definitions of "a" and "c" win.
    access = load(None, environ=environ)
    assert (access.context, access.server) == ("a", "https://127.0.0.1:1111")
    # A context only the second file has, with its CA relative to that file's folder.
    other = load(None, "b", environ=environ)
    assert other.server == "https://127.0.0.1:2222"
    assert other.credentials.authorization(None) == "Bearer second"
    assert trusted_subjects(other) == ["loadlab-test-ca"]
    assert refused(None, "c", environ=environ).endswith("no context 'c'; it has: a, b")


def test_kubeconfig_env_with_no_existing_file_is_one_line(tmp_path: Path) -> None:
    environ = {"KUBECONFIG": str(tmp_path / "absent")}
    assert "none of its files exists" in refused(None, environ=environ)

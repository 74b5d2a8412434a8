"""Reaching a real API server: a kubeconfig context resolved to a URL, a verifying TLS context and
credentials (``ClusterAccess``), and the allowlist that must name the context first.

kubernetes-asyncio's configuration code resolves the user and cluster (tokens and token files,
client certificates and CAs as files or ``-data``, exec credential plugins, basic auth); loadlab
keeps only what the hot path needs: an ``ssl.SSLContext`` for aiohttp's connector and the
``Authorization`` value. kubernetes-asyncio is imported inside ``load_kubeconfig`` only: a run
against the embedded sim never pays for importing its client (~0.4 s).

Multiple files (``$KUBECONFIG=a:b``) merge as kubectl merges them: the first file to name a
cluster, user or context wins, and so does the first ``current-context``. Relative file paths are
relative to the file that holds them.

Safety: TLS verification stays on; ``insecure-skip-tls-verify`` is honoured for loopback only.
A context is aimed at only when it is allowlisted (``check_context_allowed``); pass
``allow_contexts`` to ``load_kubeconfig`` and the check happens before any credential plugin runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import re
import ssl
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from loadlab.errors import UsageError
from loadlab.targets.address import is_loopback, parse_server_url
from loadlab.targets.credentials import (
    Credentials,
    KubeconfigCredentials,
    SimIdentity,
    TokenFile,
    read_token_file,
)

_LIBRARY_LOGGER = "kubernetes_asyncio.config.kube_config"
"""It logs an exec plugin's failure before raising it; the raised error is the one line shown."""
_EXEC_FAILED = re.compile(r"exec: process returned (-?\d+)\.?\s*(.*)", re.DOTALL)
_SECTIONS = ("clusters", "contexts", "users")


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and how to talk to it."""

    server: str
    """Base URL without a trailing slash; ``localhost`` already mapped to 127.0.0.1."""
    context: str | None
    """The kubeconfig context; None for ``--api`` or the embedded sim (not allowlisted by name)."""
    ssl: ssl.SSLContext | None
    """None: aiohttp's default (plain HTTP, or https verified against the system store)."""
    credentials: Credentials
    source: str
    """For messages: ``context loadlab-sim (/path/kubeconfig)`` or the URL."""
    tls_server_name: str | None = None
    """The name the server certificate must carry when it differs from the URL's host (the
    kubeconfig's ``tls-server-name``, or ``localhost`` after loadlab mapped it to 127.0.0.1)."""


def client_tls(
    scheme: str, access: ClusterAccess | None, ssl_context: ssl.SSLContext | None
) -> tuple[ssl.SSLContext | None, str | None]:
    """The TLS context and server name a lean client (``fast_http``, ``agent_fast_http``)
    connects with: none for ``http``; for ``https`` the access's context, else ``ssl_context``,
    else one verifying against the system store, and the access's ``tls_server_name``."""
    if scheme != "https":
        return None, None
    given = access.ssl if access is not None and access.ssl is not None else ssl_context
    context = given if given is not None else ssl.create_default_context()
    return context, access.tls_server_name if access is not None else None


def check_base_url(base_url: str, access: ClusterAccess | None) -> None:
    """ValueError unless ``base_url`` is ``access``'s server (trailing slash aside): a client is
    given both, and its TLS context and credentials are only for that server."""
    if access is not None and base_url.rstrip("/") != access.server:
        raise ValueError(f"base_url {base_url} is not {access.server}, from {access.source}")


def api_access(base_url: str) -> ClusterAccess:
    """A bare ``--api`` URL or the embedded sim: no context, the sim's identity convention."""
    server = base_url.rstrip("/")
    return ClusterAccess(server, None, None, SimIdentity(), server)


def with_token_file(access: ClusterAccess, tokens: Mapping[str, str]) -> ClusterAccess:
    """``access`` with a token per user (``read_token_file``); others keep its credentials."""
    return replace(access, credentials=TokenFile(tokens, access.credentials))


def check_context_allowed(access: ClusterAccess, allowed: Collection[str]) -> None:
    """UsageError unless ``access`` names no context or its context is in ``allowed``.

    Called before anything connects: a kubeconfig often holds production next to the test
    cluster, and its current-context is whatever the user last switched to.
    """
    if access.context is not None:
        _check_allowed(access.context, allowed)


def _check_allowed(context: str, allowed: Collection[str]) -> None:
    if context not in allowed:
        raise UsageError(
            f"context {context}: not allowlisted; pass --allow-context {context} "
            "(or allow_contexts: in the profile) to aim load at it"
        )


async def load_kubeconfig(
    path: Path | None,
    context: str | None,
    *,
    allow_contexts: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterAccess:
    """Resolve ``context`` (None: current-context) of the kubeconfig at ``path`` (None:
    ``$KUBECONFIG``, else ``~/.kube/config``). Every failure is one UsageError naming the file
    and context. With ``allow_contexts``, an unlisted context is refused before any credential
    plugin runs."""
    env = os.environ if environ is None else environ
    files, shown = _kubeconfig_files(path, env)
    docs = [(file, _read_yaml(file)) for file in files]
    merged = _merge(docs)
    current = next((str(d["current-context"]) for _, d in docs if d.get("current-context")), None)
    name = context if context is not None else current
    known = [str(c["name"]) for c in merged["contexts"]]
    if name is None:
        raise UsageError(
            f"kubeconfig {shown}: no current-context; pass --context NAME "
            f"(it has: {', '.join(known) or 'no contexts'})"
        )
    if name not in known:
        raise UsageError(
            f"kubeconfig {shown}: no context '{name}'; it has: {', '.join(known) or 'none'}"
        )
    where = f"kubeconfig {shown}, context {name}"
    if allow_contexts is not None:
        _check_allowed(name, allow_contexts)
    cluster, user = _cluster_and_user(merged, name, where)
    if "proxy-url" in cluster:
        raise UsageError(f"{where}: proxy-url is not supported; loadlab connects directly")
    address = parse_server_url(str(cluster["server"]), what=f"{where}: server")
    insecure = cluster.get("insecure-skip-tls-verify") is True
    if insecure and not is_loopback(address.connect_host):
        raise UsageError(
            f"{where}: insecure-skip-tls-verify is set, and loadlab skips TLS verification only "
            f"on loopback, not for {address.host}; give certificate-authority(-data) instead"
        )
    loader, config = await _resolve(merged, docs, name, where)
    if "exec" in user and getattr(loader, "token", None) is None and config.cert_file is None:
        raise UsageError(
            f"{where}: the exec credential plugin gave neither a token nor a client "
            "certificate (status.token or status.clientCertificateData)"
        )
    tls = _tls_context(config, insecure, where) if address.scheme == "https" else None
    # loadlab connects to 127.0.0.1 for localhost; the certificate still has to name localhost.
    is_localhost = address.host.lower().rstrip(".") == "localhost"
    server_name = config.tls_server_name or ("localhost" if is_localhost else None)
    return ClusterAccess(
        server=address.base_url,
        context=name,
        ssl=tls,
        credentials=_credentials(loader, where),
        source=f"context {name} ({shown})",
        tls_server_name=str(server_name) if server_name and tls is not None else None,
    )


def _kubeconfig_files(path: Path | None, env: Mapping[str, str]) -> tuple[list[Path], str]:
    """The files to merge, and how to name them in messages. Missing files in ``$KUBECONFIG``
    are skipped, as kubectl skips them; a missing explicit file is an error."""
    if path is not None:
        if not path.is_file():
            raise UsageError(f"kubeconfig {path}: no such file")
        return [path], str(path)
    listed = env.get("KUBECONFIG", "")
    if listed:
        files = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
        existing = [f for f in files if f.is_file()]
        if not existing:
            raise UsageError(f"kubeconfig $KUBECONFIG={listed}: none of its files exists")
        return existing, str(existing[0]) if len(existing) == 1 else listed
    default = Path.home() / ".kube" / "config"
    if not default.is_file():
        raise UsageError(f"kubeconfig {default}: no such file; pass --kubeconfig PATH")
    return [default], str(default)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"kubeconfig {path}: cannot read it ({reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"kubeconfig {path}: not YAML{at}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"kubeconfig {path}: expected a mapping (a kubeconfig), not a list")
    return doc


def _merge(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """kubectl's merge: each named entry from the first file that has it, remembered with that
    file (``_resolve`` resolves its relative paths against it)."""
    merged: dict[str, list[dict[str, Any]]] = {section: [] for section in _SECTIONS}
    for path, doc in docs:
        for section in _SECTIONS:
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise UsageError(f"kubeconfig {path}: {section} must be a list")
            seen = {e["name"] for e in merged[section]}
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise UsageError(f"kubeconfig {path}: every entry of {section} needs a name")
                if entry["name"] not in seen:
                    seen.add(entry["name"])
                    merged[section].append({**entry, "__file__": str(path)})
    return merged


def _named(entries: list[dict[str, Any]], name: object) -> dict[str, Any] | None:
    return next((e for e in entries if e["name"] == name), None)


def _cluster_and_user(
    merged: dict[str, list[dict[str, Any]]], name: str, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The context's cluster and user sections (the user empty when it names none)."""
    ctx = _named(merged["contexts"], name)
    body = ctx.get("context") if ctx is not None else None
    if not isinstance(body, dict) or not body.get("cluster"):
        raise UsageError(f"{where}: the context names no cluster")
    entry = _named(merged["clusters"], body["cluster"])
    if entry is None:
        raise UsageError(f"{where}: cluster '{body['cluster']}' is not in the kubeconfig")
    cluster = entry.get("cluster")
    if not isinstance(cluster, dict) or not cluster.get("server"):
        raise UsageError(f"{where}: cluster '{body['cluster']}' has no server")
    user_name = body.get("user")
    if not user_name:
        return cluster, {}
    user = _named(merged["users"], user_name)
    if user is None:
        raise UsageError(f"{where}: user '{user_name}' is not in the kubeconfig")
    user_section = user.get("user")
    return cluster, user_section if isinstance(user_section, dict) else {}


@contextlib.contextmanager
def _library_log_muted() -> Iterator[None]:
    """Silence kubernetes-asyncio's logger while it runs: with no logging configured, Python
    prints its records to stderr, and the error it raises right after says the same thing."""
    logger = logging.getLogger(_LIBRARY_LOGGER)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


async def _resolve(
    merged: dict[str, list[dict[str, Any]]],
    docs: list[tuple[Path, dict[str, Any]]],
    name: str,
    where: str,
) -> tuple[Any, Any]:
    """kubernetes-asyncio's ``KubeConfigLoader`` over the merged config: (loader, Configuration).

    Each entry becomes a ``ConfigNode`` carrying its file, which the loader uses as the base of
    relative paths (what its own ``KubeConfigMerger`` does; that one also logs to stderr when a
    file is missing and keeps the last current-context rather than kubectl's first).
    """
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.kube_config import ConfigNode, KubeConfigLoader

    first = str(docs[0][0])
    value: dict[str, Any] = {"current-context": name}
    for section, entries in merged.items():
        value[section] = [
            ConfigNode(f"{e['__file__']}/{section}", _without_file(e), e["__file__"])
            for e in entries
        ]
    config = Configuration()
    loader = KubeConfigLoader(ConfigNode(first, value, first), config_base_path=None)
    try:
        with _library_log_muted():
            await loader.load_and_set(config)
    except _library_errors() as exc:
        raise UsageError(f"{where}: {_failure(exc)}") from None
    return loader, config


def _library_errors() -> tuple[type[Exception], ...]:
    """What kubernetes-asyncio raises on a bad kubeconfig or a failing plugin: its
    ConfigException, OSError (files, running the plugin), ValueError (base64, dates, JSON), and
    TypeError/KeyError where it indexes a section of the wrong shape."""
    from kubernetes_asyncio.config.config_exception import ConfigException

    return (ConfigException, OSError, ValueError, TypeError, KeyError)


def _without_file(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "__file__"}


def _failure(exc: BaseException) -> str:
    """One line for what went wrong inside kubernetes-asyncio."""
    text = str(exc).strip()
    exec_failed = _EXEC_FAILED.fullmatch(text)
    if exec_failed is not None:
        code, stderr = exec_failed.groups()
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        said = f": {lines[-1]}" if lines else ""
        return f"exec credential plugin failed (exit {code}){said}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"cannot run {exc.filename}: no such file (exec credential plugin?)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    lines = text.splitlines()
    return (lines[-1] if lines else type(exc).__name__).replace("exec: ", "exec credential: ")


def _ssl_reason(exc: OSError) -> str:
    text = str(exc) if isinstance(exc, ssl.SSLError) or not exc.strerror else exc.strerror
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)


def _tls_context(config: Any, insecure: bool, where: str) -> ssl.SSLContext:
    """Verification on: the kubeconfig's CA when it has one (and then only it, as kubectl),
    else the system store; the client certificate chain when given."""
    ca = config.ssl_ca_cert
    try:
        context = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"{where}: cannot use certificate-authority {ca}: {_ssl_reason(exc)}"
        ) from None
    if insecure:  # loopback only (checked by the caller)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        try:
            context.load_cert_chain(config.cert_file, config.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"{where}: cannot use client-certificate/client-key: {_ssl_reason(exc)}"
            ) from None
    return context


def _credentials(loader: Any, where: str) -> KubeconfigCredentials:
    """The loader's token, renewed through the loader (so through the exec plugin again) when it
    nears the expiry the plugin gave."""
    expires_at: datetime.datetime | None = getattr(loader, "exec_plugin_expiry", None)

    async def renew() -> tuple[str | None, datetime.datetime | None]:
        # The loader skips the plugin while its own idea of expiry (5 min ahead) is not reached;
        # loadlab decides when (credentials.REFRESH_MARGIN), so forget the old expiry first.
        with contextlib.suppress(AttributeError):
            del loader.exec_plugin_expiry
        try:
            with _library_log_muted():
                await loader.load_from_exec_plugin()
        except _library_errors() as exc:
            raise UsageError(f"{where}: renewing the token: {_failure(exc)}") from None
        return _header(loader), getattr(loader, "exec_plugin_expiry", None)

    return KubeconfigCredentials(
        _header(loader),
        expires_at=expires_at,
        renew=renew if expires_at is not None else None,
    )


def _header(loader: Any) -> str | None:
    """The loader's ``Authorization`` value, trimmed: it keeps a token file's trailing newline
    (client-go trims it), and a newline in a header would fail every request."""
    token = getattr(loader, "token", None)
    if token is None:
        return None
    return str(token).strip() or None


@dataclass(frozen=True)
class AccessRecipe:
    """What a worker needs to build the run's ``ClusterAccess`` itself: credentials are not
    sent over the wire; each worker re-reads the same kubeconfig context (its allowlist checked
    again, its credential plugin run in the worker) or the same tokens file. JSON-able, so a
    worker on another machine can be handed it with its own copy of the files."""

    kubeconfig: str | None = None
    context: str | None = None
    allow_contexts: tuple[str, ...] = ()
    tokens_file: str | None = None
    api: str | None = None
    """``--api`` URL (with ``tokens_file``); None: a kubeconfig context."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccessRecipe:
        return cls(
            kubeconfig=data.get("kubeconfig"),
            context=data.get("context"),
            allow_contexts=tuple(data.get("allow_contexts", ())),
            tokens_file=data.get("tokens_file"),
            api=data.get("api"),
        )

    async def build(self) -> ClusterAccess:
        """The ``ClusterAccess`` this recipe names, as ``resolve_targets`` built it."""
        if self.api is not None:
            access = api_access(self.api)
        else:
            kubeconfig = Path(self.kubeconfig) if self.kubeconfig is not None else None
            access = await load_kubeconfig(
                kubeconfig, self.context, allow_contexts=self.allow_contexts
            )
        if self.tokens_file is None:
            return access
        return with_token_file(access, read_token_file(Path(self.tokens_file)))

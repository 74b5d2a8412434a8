"""``loadlab run``: from a profile and a command line to a results folder and an exit code.

Order of work: validate everything the user gave (profile, addresses) -> claim the results folder
(unique, writable, before any traffic) -> start the embedded control plane if a target is missing
-> probe the targets -> run the session -> judge it and write summary.json. Any user-facing
failure is a ``LoadlabError`` (one line, a documented exit code); a bug is an ``InternalError``
whose traceback goes to a log file in the results folder. SIGINT and SIGTERM stop the load, write
a summary marked ``"complete": false`` that claims nothing, and exit 130 / 143.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from loadlab import runloop
from loadlab.cluster.objects import run_namespace as run_namespace_name
from loadlab.errors import (
    EXIT_RESULTS_WRITE,
    InternalError,
    LoadlabError,
    Terminated,
    UsageError,
)
from loadlab.finish import write_report_quietly
from loadlab.launch_cluster import (
    ClusterArgs,
    Targets,
    check_request_mix,
    resolve_targets,
)
from loadlab.launch_mix import embedded_control_plane, parse_workers, run_profile
from loadlab.launch_sweep import parse_sizes, refuse_sweep_flags, run_sweep
from loadlab.present import gate_line, print_result
from loadlab.profile import Profile, load_profile
from loadlab.progress import make_progress
from loadlab.results import (
    claim_out_dir,
    create_unique_dir,
    default_out_dir,
    write_error_log,
)
from loadlab.targets.address import loopback_targets
from loadlab.targets.base import check_fd_budget
from loadlab.wiring import (
    descriptors_needed,
)


def run_command(
    profile_path: Path,
    *,
    api: str | None,
    dns: str | None,
    out: Path | None,
    overrides: list[str],
    quiet: bool,
    sizes: str | None = None,
    quick: bool = False,
    gate: bool = False,
    report: bool = True,
    cluster: ClusterArgs | None = None,
    workers: str = "1",
) -> int:
    profile = load_profile(profile_path, overrides)
    refuse_sweep_flags(profile, sizes, quick)
    worker_count = parse_workers(workers)
    cluster = cluster or ClusterArgs()
    # Every address and allowlist is checked, and the kubeconfig read, before anything connects.
    targets = runloop.run(resolve_targets(profile, api=api, dns=dns, cluster=cluster))
    if profile.agents is not None:
        run_id = uuid.uuid4().hex[:12]
        profile = check_request_mix(profile, targets, run_namespace_name(run_id))
        return _sweep_command(
            profile,
            targets=targets,
            out=out,
            quiet=quiet,
            sizes=sizes,
            quick=quick,
            gate=gate,
            report=report,
            run_id=run_id,
            workers=worker_count,
        )
    run_id = uuid.uuid4().hex[:12]
    profile = apply_targets(profile, targets, cluster)
    profile = check_request_mix(profile, targets, run_namespace_name(run_id))
    # The folder is checked (and made this run's own) before anything starts or connects.
    out_dir = claim_out_dir(
        out if out is not None else create_unique_dir(default_out_dir(profile.name)), run_id
    )
    check_fd_budget(descriptors_needed(profile))
    progress = make_progress(quiet)
    with (
        sigterm_raises_terminated(),
        bugs_logged_in(out_dir),
        embedded_control_plane(profile) as (api_url, dns_addr),
    ):
        outcome = runloop.run(
            run_profile(
                profile,
                api_url=api_url,
                dns_addr=dns_addr,
                out_dir=out_dir,
                progress=progress,
                run_id=run_id,
                targets=targets,
                workers=worker_count,
            )
        )
    # A run stopped by a write error (disk full) gets no report: there is no room for it.
    wrote = report and outcome.exit_code != EXIT_RESULTS_WRITE
    report_html = write_report_quietly(out_dir) if wrote else None
    if outcome.summary is not None:
        print_result(outcome.summary, out_dir, report=report_html)
        if gate:
            print(gate_line(outcome.summary), file=sys.stdout)
    if outcome.error is not None:
        print(f"loadlab: {outcome.error}", file=sys.stderr)
    return outcome.exit_code


def _sweep_command(
    profile: Profile,
    *,
    targets: Targets,
    out: Path | None,
    quiet: bool,
    sizes: str | None,
    quick: bool,
    gate: bool,
    report: bool,
    run_id: str,
    workers: int = 1,
) -> int:
    """An agent scenario over cluster sizes (``loadlab.launch_sweep``)."""
    size_list = parse_sizes(sizes) if sizes else None
    out_dir = claim_out_dir(
        out if out is not None else create_unique_dir(default_out_dir(profile.name)), run_id
    )
    progress = make_progress(quiet)
    with sigterm_raises_terminated(), bugs_logged_in(out_dir):
        code = run_sweep(
            profile,
            targets=targets,
            sizes=size_list,
            quick=quick,
            out_dir=out_dir,
            progress=progress,
            run_id=run_id,
            gate=gate,
            report=report,
            workers=workers,
        )
    return code


@contextlib.contextmanager
def bugs_logged_in(out_dir: Path) -> Iterator[None]:
    """A bug in loadlab becomes one line (``InternalError``, exit 70) naming the log file in the
    results folder that holds its traceback; what a user can meet passes through unchanged."""
    try:
        yield
    except (LoadlabError, KeyboardInterrupt, Terminated):
        raise
    except Exception as exc:
        log = write_error_log(exc, out_dir)
        raise InternalError(
            f"internal error ({type(exc).__name__}: {exc}); the traceback is in {log}; "
            "partial results are kept there. Please report it."
        ) from None


@contextlib.contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Outside the event loop (loading, starting the sim), SIGTERM raises ``Terminated`` so that
    every ``finally`` on the way out runs (the sim is stopped); inside it, ``run_profile``'s own
    handler takes over and stops the load cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def apply_targets(profile: Profile, targets: Targets, cluster: ClusterArgs) -> Profile:
    """Put the run's addresses into the profile. ``--api``/``--dns`` were checked by
    ``resolve_targets``; addresses written in the profile itself are checked here by the same
    rule (loopback, or allowlisted), so the profile as run holds IP literals only."""
    api_url = targets.api_url
    dns_addr = targets.dns_addr
    if api_url is not None and profile.api is None:
        raise UsageError(f"--api given, but profile '{profile.name}' has no 'api' section")
    if dns_addr is not None and profile.dns is None:
        raise UsageError(f"--dns given, but profile '{profile.name}' has no 'dns' section")
    if api_url is None and profile.api is not None and profile.api.url is not None:
        api_url, _ = loopback_targets(profile.api.url, None, allow_api=cluster.allow_api)
    if dns_addr is None and profile.dns is not None and profile.dns.server is not None:
        _, dns_addr = loopback_targets(None, profile.dns.server, allow_dns=cluster.allow_dns)
    update: dict[str, object] = {}
    if profile.api is not None and api_url is not None:
        update["api"] = profile.api.model_copy(update={"url": api_url})
    if profile.dns is not None and dns_addr is not None:
        update["dns"] = profile.dns.model_copy(update={"server": dns_addr})
    return profile.model_copy(update=update) if update else profile

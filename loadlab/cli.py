"""Command line: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from loadlab import __version__
from loadlab.errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    LoadlabError,
    Terminated,
)
from loadlab.shipped import profile_file, shipped_profiles

if TYPE_CHECKING:
    from loadlab.profile import Profile

EXIT_CODES_HELP = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, width=78, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
    for code, meaning in EXIT_CODES.items()
)

EPILOG = (
    EXIT_CODES_HELP
    + """

examples:
  loadlab run http-knee                              # knee of the embedded control plane
  loadlab run http-knee --api http://127.0.0.1:6443
  loadlab run dns-knee --dns 127.0.0.1:5353 --set load.ramp.max_per_s=20000
  loadlab run my-profile.yaml                        # a profile of your own
  loadlab run openai-2024-telemetry --quick --gate   # does the rollout fit? one line, exit 0/1/4
  loadlab report results/http-knee-20261130T210835Z  # report.html, summary.md, perfdash.json
  loadlab compare results/A results/B --threshold 10%  # did B (another config) regress?
  loadlab profiles                                   # the shipped profiles, by name
  loadlab sim --nodes 5000 --pods-per-node 30        # the embedded control plane, standalone
"""
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadlab",
        description=(
            "Find at what load a Kubernetes control plane (API server, cluster DNS) saturates, "
            "and how it then fails. Without --api/--dns, loadlab starts its embedded simulated "
            "control plane on loopback and aims at that."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loadlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a load profile and write results",
        description=(
            "Run PROFILE (a YAML file, or a name from `loadlab profiles`) and write summary.json, "
            "timeline.csv and HdrHistogram logs to the output folder as the run goes."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("profile", help="profile YAML file, or the name of a shipped profile")
    run.add_argument(
        "--api", metavar="URL", help="API server base URL (loopback), e.g. http://127.0.0.1:6443"
    )
    run.add_argument(
        "--dns", metavar="HOST:PORT", help="DNS resolver (loopback), e.g. 127.0.0.1:5353"
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="results folder (default results/<profile>-<UTC time>)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field, e.g. --set load.ramp.max_per_s=5000 (repeatable)",
    )
    run.add_argument("--quiet", action="store_true", help="no live progress, even on a terminal")
    run.add_argument(
        "--sizes",
        metavar="N,N,...",
        help="agent scenarios: the cluster sizes (nodes) to run at, e.g. --sizes 250,1000",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="agent scenarios: the profile's short version (fewer sizes, shorter phases)",
    )
    cluster = run.add_argument_group(
        "real clusters",
        "A kubeconfig context is aimed at only when allowlisted; a run against one creates its "
        "objects in the namespace loadlab-<run id>, labels them loadlab.io/run=<run id>, deletes "
        "them when it ends, and stops itself (exit 5) when the cluster shows distress.",
    )
    add_cluster_arguments(cluster)
    cluster.add_argument(
        "--allow-api",
        action="append",
        default=[],
        metavar="URL",
        help="allow this --api URL outside loopback (repeatable)",
    )
    cluster.add_argument(
        "--allow-dns",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="allow this --dns address outside loopback, e.g. a cluster DNS (repeatable)",
    )
    cluster.add_argument(
        "--tokens-file",
        type=Path,
        metavar="PATH",
        help="a token per simulated node (kube-apiserver's static token file format: "
        "token,user,uid,groups); nodes not in it use the kubeconfig's identity",
    )
    run.add_argument(
        "--gate",
        action="store_true",
        help=(
            "pre-rollout gate: end with one 'gate:' line; exit 0 when the cluster fits (held "
            "with its SLOs met at the profile's require.min_nodes, or at every size), 1 when a "
            "size up to it failed, 4 when nothing measured shows it"
        ),
    )
    run.add_argument(
        "--workers",
        metavar="N",
        default="1",
        help=(
            "generator processes (default 1; 'auto': one per usable core). Each sends its share "
            "of the rate over its own connections, or runs its share of an agent scenario's "
            "nodes (worker i of N: nodes i, i+N, ...); their histograms are merged into one set "
            "of results, one knee, one verdict per size"
        ),
    )
    run.add_argument(
        "--no-report",
        dest="report",
        action="store_false",
        help="do not write report.html, summary.md and perfdash.json at the end",
    )

    sim = sub.add_parser(
        "sim",
        help="run the embedded control plane in the foreground",
        description="Run the simulated kube-apiserver and cluster DNS on loopback until Ctrl-C.",
    )
    from loadlab.sim.cli import add_sim_arguments

    add_sim_arguments(sim)

    report = sub.add_parser(
        "report",
        help="write report.html, summary.md and perfdash.json for a results folder",
        description=(
            "Read RESULT_DIR (what `loadlab run` wrote, finished or not) and write into it "
            "report.html (self-contained: plots embedded, opens with no network), the plots as "
            "PNG under plots/, summary.md for terminals and pull requests, and perfdash.json "
            "(clusterloader2's perfdash format)."
        ),
    )
    report.add_argument("result_dir", type=Path, metavar="RESULT_DIR", help="a results folder")

    compare = sub.add_parser(
        "compare",
        help="compare two results folders (A: baseline, B: candidate)",
        description=(
            "Compare two runs of the same profile, e.g. against two API-server configurations: "
            "per size the knee ratio B/A, per operation the p50 and p99 ratios with their "
            "spread across intervals, a verdict per row; writes compare.html and compare.md. "
            "Exit 0 when B is not worse than A beyond the threshold, 1 when it regressed, 2 "
            "when the folders are not comparable (different profiles or sizes)."
        ),
    )
    compare.add_argument("a", type=Path, metavar="A", help="baseline results folder")
    compare.add_argument("b", type=Path, metavar="B", help="candidate results folder")
    compare.add_argument(
        "--threshold",
        default="10%",
        metavar="PCT",
        help="how much worse B may be before it counts as a regression (default 10%%)",
    )
    compare.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where to write compare.html and compare.md (default: next to B)",
    )

    clean = sub.add_parser(
        "cleanup",
        help="delete what loadlab runs left in a cluster (found by their label)",
        description=(
            "Delete every object labelled loadlab.io/run=<ID> (--run ID) or labelled by any run "
            "(--all): leases, configmaps, nodes, then the runs' namespaces. A run cleans up "
            "after itself, also on Ctrl-C and SIGTERM; this is for one killed with SIGKILL. Exit "
            "0 when nothing is left, 1 when something could not be deleted."
        ),
    )
    which = clean.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="ID", help="the run id (summary.json's run_id)")
    which.add_argument("--all", action="store_true", help="every loadlab run's objects")
    add_cluster_arguments(clean)
    clean.add_argument("--api", metavar="URL", help="a loopback API server instead of a context")

    sub.add_parser("profiles", help="list the shipped profiles")

    validate = sub.add_parser(
        "validate",
        help="check a profile without running it",
        description=(
            "Read PROFILE, apply --set overrides and validate every field, as `loadlab run` "
            "would, without starting anything. Exit 0 and a one-line description when valid; "
            "exit 2 and one line naming the field when not."
        ),
    )
    validate.add_argument("profile", help="profile YAML file, or the name of a shipped profile")
    validate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field before validating it (repeatable)",
    )
    return parser


def add_cluster_arguments(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default its current-context)"
    )
    parser.add_argument(
        "--allow-context",
        dest="allow_contexts",
        action="append",
        default=[],
        metavar="NAME",
        help="allow load against this kubeconfig context (repeatable); nothing else is touched",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loadlab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = COMMANDS.get(args.command or "")
        if command is None:
            parser.print_help()
            return EXIT_USAGE
        return command(args)
    except LoadlabError as exc:
        print(f"loadlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loadlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("loadlab: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:
        # The last resort: a bug outside a run (a run logs its own into its results folder).
        from loadlab.results import write_error_log

        log = write_error_log(exc, None)
        print(
            f"loadlab: internal error ({type(exc).__name__}: {exc}); the traceback is in {log}. "
            "Please report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    from loadlab.launch import run_command
    from loadlab.launch_cluster import ClusterArgs

    with profile_file(args.profile) as profile_path:
        return run_command(
            profile_path,
            api=args.api,
            dns=args.dns,
            out=args.out,
            overrides=args.overrides,
            quiet=args.quiet,
            sizes=args.sizes,
            quick=args.quick,
            gate=args.gate,
            report=args.report,
            workers=args.workers,
            cluster=ClusterArgs(
                kubeconfig=args.kubeconfig,
                context=args.context,
                allow_contexts=tuple(args.allow_contexts),
                allow_api=tuple(args.allow_api),
                allow_dns=tuple(args.allow_dns),
                tokens_file=args.tokens_file,
            ),
        )


def _sim(args: argparse.Namespace) -> int:
    from loadlab.sim.cli import sim_command

    return sim_command(args)


def _cleanup(args: argparse.Namespace) -> int:
    from loadlab.cluster.commands import cleanup_command

    return cleanup_command(
        run_id=args.run,
        all_runs=args.all,
        kubeconfig=args.kubeconfig,
        context=args.context,
        allow_contexts=args.allow_contexts,
        api=args.api,
    )


def _report(args: argparse.Namespace) -> int:
    from loadlab.report import report_command

    return report_command(args.result_dir)


def _compare(args: argparse.Namespace) -> int:
    from loadlab.report.compare_page import compare_command, parse_threshold

    return compare_command(args.a, args.b, threshold=parse_threshold(args.threshold), out=args.out)


def _validate(args: argparse.Namespace) -> int:
    from loadlab.profile import load_profile

    with profile_file(args.profile) as profile_path:
        profile = load_profile(profile_path, args.overrides)
    print(f"{args.profile}: valid ({describe_profile(profile)})")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    for shipped in shipped_profiles():
        print(f"{shipped.name:20} {shipped.description}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "sim": _sim,
    "cleanup": _cleanup,
    "report": _report,
    "compare": _compare,
    "validate": _validate,
    "profiles": _profiles,
}


def describe_profile(profile: Profile) -> str:
    """A few words on what ``profile`` would run."""
    if profile.agents is not None:
        kinds = [
            name
            for name, section in (
                ("kubelet", profile.agents.kubelet),
                ("pod-dns", profile.agents.pod_dns),
                ("telemetry", profile.agents.telemetry),
                ("mix", profile.agents.mix),
            )
            if section is not None
        ]
        sizes = ", ".join(f"{n:,}" for n in profile.size_list)
        return f"profile {profile.name}: agents {', '.join(kinds)} at {sizes} nodes"
    targets = [name for name, section in (("api", profile.api), ("dns", profile.dns)) if section]
    load = profile.traffic
    if load.ramp is not None:
        shape = f"a ramp from {load.ramp.start_per_s:,.0f}/s to {load.ramp.max_per_s:,.0f}/s"
    elif load.mode == "closed":
        shape = f"a closed loop of {load.concurrency} for {load.duration_s:g} s"
    else:
        shape = f"{load.rate_per_s or 0:,.0f}/s for {load.duration_s:g} s"
    return f"profile {profile.name}: {shape} against {' and '.join(targets)}"

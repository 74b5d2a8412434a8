"""Every error a user can meet, each with its exit code and a message that says what to do.

The CLI prints ``loadlab: <message>`` on one line and exits with ``exit_code``; never a traceback.
A bug in loadlab itself exits ``EXIT_INTERNAL`` with one line that names the log file holding the
traceback, so a pipeline can tell a failing server (1) from a crashing tool (70).
"""

from __future__ import annotations

# Documented exit codes (README, "Exit codes"; ``loadlab run --help``). Tests check each one.
EXIT_OK = 0
EXIT_SLO_FAILED = 1  # an SLO failed, or the server failed under load (down, only errors)
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INCONCLUSIVE = 4  # the generator, not the server, was the limit; or no knee was bracketed
EXIT_ABORTED = 5  # a safety rail stopped the load: the target showed distress
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: a bug in loadlab
EXIT_RESULTS_WRITE = 74  # sysexits.h EX_IOERR: the results could not be written (disk full)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 143  # 128 + SIGTERM

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "the run measured the server and it passed: its SLOs were met (fixed run), or a "
    "ramp found the knee with the server serving every step below it, or held up to the maximum",
    EXIT_SLO_FAILED: "the server failed: an SLO was missed, it failed at the lowest offered load, "
    "or it stopped serving mid-run",
    EXIT_USAGE: "bad command line or profile (one line names the field and what was expected)",
    EXIT_UNREACHABLE: "a target could not be reached, or answered something that is not HTTP/DNS",
    EXIT_INCONCLUSIVE: "inconclusive: the load generator, not the server, was the limit, or "
    "nothing measured decides it (the search ran out of steps before bracketing a knee, a size "
    "ran too short to judge, --gate's required size was not measured)",
    EXIT_ABORTED: "aborted by a safety rail: the target showed distress (its /readyz or a canary "
    "GET failed or was slow, or the run's own error rate, 429 share or p99 passed the profile's "
    "abort limits); the load was unwound within 2 s and the summary says when and why",
    EXIT_INTERNAL: "internal error of loadlab (the traceback is in the named log file)",
    EXIT_RESULTS_WRITE: "the results could not be written (disk full, no permission); the load "
    "was stopped and what was written is kept",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); partial results are kept, nothing is claimed",
    EXIT_TERMINATED: "terminated (SIGTERM); partial results are kept, nothing is claimed",
}
"""Every exit code loadlab uses, with its meaning (``--help`` prints it; the README mirrors it)."""


class LoadlabError(Exception):
    """Base of the errors a user can see."""

    exit_code = EXIT_USAGE


class UsageError(LoadlabError):
    """Bad command line: unknown option, bad value."""

    exit_code = EXIT_USAGE


class ProfileError(LoadlabError):
    """The profile file is missing, is not YAML, or a field is wrong."""

    exit_code = EXIT_USAGE


class TargetUnreachable(LoadlabError):
    """The API server or DNS resolver did not answer a pre-flight probe."""

    exit_code = EXIT_UNREACHABLE


class TargetMisbehaving(LoadlabError):
    """The target answered, but not with HTTP or DNS."""

    exit_code = EXIT_UNREACHABLE


class Aborted(LoadlabError):
    """A safety rail stopped the load (``loadlab.cluster.rails``): the target showed distress."""

    exit_code = EXIT_ABORTED


class ResultsWriteError(LoadlabError):
    """Writing the results failed (disk full, read-only, quota): the load is stopped."""

    exit_code = EXIT_RESULTS_WRITE


class GeneratorResourceError(LoadlabError):
    """The generator ran out of something of its own machine (file descriptors) mid-run."""

    exit_code = EXIT_INCONCLUSIVE


class InternalError(LoadlabError):
    """A bug in loadlab; the message names the log file with the traceback."""

    exit_code = EXIT_INTERNAL


class Terminated(BaseException):
    """SIGTERM arrived while loadlab was not in its event loop (e.g. starting the sim).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` never swallows it and
    every ``finally`` (stopping the sim) runs on the way out.
    """

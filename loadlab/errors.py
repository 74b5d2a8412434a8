"""Every error a user can meet, each with its exit code and a message that says what to do.

The CLI prints ``loadlab: <message>`` on one line and exits with ``exit_code``; never a traceback.
"""

from __future__ import annotations

# Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_SLO_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INCONCLUSIVE = 4  # the generator, not the server, was the limit
EXIT_INTERRUPTED = 130


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

"""One base error; the CLI's top-level handler turns it into an annotation and exit code 1."""

from __future__ import annotations


class LeptonError(Exception):
    """Base class of every error lepton-ci reports to a user."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Where in a user's file the problem is: the annotation points there on GitHub.
        self.file = file
        self.line = line
        self.col = col

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(LeptonError):
    """lepton.yaml (or a file it names) is missing, malformed or invalid."""


class InputError(LeptonError):
    """A file the run reads or writes (params, metrics, outputs) is missing or invalid."""


class CommandFailed(LeptonError):
    """A user's train or evaluate command exited non-zero."""


class GitError(LeptonError):
    """A git call failed or the repository is in a state lepton-ci cannot work with."""


class BaselineError(LeptonError):
    """The baseline version could not be resolved (missing tags, shallow history)."""


class RegistryError(LeptonError):
    """A version or stage operation on the git-tag registry was refused."""


class ImageTagTaken(LeptonError):
    """A release image tag already holds other content; it is never moved."""


class EngineUnavailable(LeptonError):
    """No container engine answers where DOCKER_HOST (or the default socket) points."""


class GateFailed(LeptonError):
    """At least one quality gate failed."""


class RunCacheMiss(LeptonError):
    """`run --cached-only` found no run-cache entry: it must not train."""


class UntrustedCode(LeptonError):
    """A job that says it runs no untrusted code was asked to run some (train, in `run`)."""


class RecordError(LeptonError):
    """An evidence record is missing, unreadable or does not match the current checkout."""


class PullError(LeptonError):
    """A version's model files could not be pulled: its image, layer or files are not what
    the version's record says; nothing was left in the folder."""


class TrustError(LeptonError):
    """A version or image does not verify: a signature, its signer or what it signs fails."""


# Optional extras: the top-level package a command imports late -> the extra that installs it.
EXTRAS = {
    "kubernetes": "deploy",
    "docker": "image",
    "securesystemslib": "trust",
    "sigstore": "trust",
    "model_signing": "trust",
    "OpenSSL": "trust",
}


class StateError(LeptonError, OSError):
    """A file or folder lepton-ci keeps its working state in is not what it should be (a
    file where a folder belongs, a FIFO or device as the lock). Still an OSError, so a caller
    that makes do without a cache or index (a read-only checkout) goes on doing so."""


class Interrupted(LeptonError):
    """lepton-ci was stopped by a signal (Ctrl-C, SIGTERM); what it had started was stopped."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as shells report


class MissingExtra(LeptonError):
    """A command needs a package of an optional extra that is not installed."""

    @classmethod
    def of(cls, e: ModuleNotFoundError) -> MissingExtra | None:
        top = (e.name or "").split(".")[0]
        if top not in EXTRAS:
            return None
        from lepton_ci import __version__

        extra = EXTRAS[top]  # the running version's extra: never whatever the index has now
        return cls(
            f"this command needs the Python package `{top}`, which is not installed",
            hint=f"pip install 'lepton-ci[{extra}]=={__version__}'",
        )


class WatchError(LeptonError):
    """An SLO could not be evaluated: Prometheus unreachable, a query refused, no data to judge."""


class SLOBreached(LeptonError):
    """A live SLO was breached; the breach was recorded (and the release reverted, if asked)."""

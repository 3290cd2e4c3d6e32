"""Shadow results: what a candidate answered beside the serving revision, kept in git.

A shadow rollout (`rollout: {strategy: shadow}`) ends in one `ShadowResult` per environment.
It is kept under `refs/lepton-ci/shadow/<algorithm>-<hex>` (the record's digest), a commit
whose tree holds `<env>.json` for every environment the version was shadowed in; each new
result is a new commit on top of the last, so the ref's log is the version's shadow history.
Why git, like the attestations (trust/store.py), and not the deploy state directory:
- a later `deploy` on another runner (or another machine) reads it: the gate travels with the
  repository, not with the machine that ran the shadow;
- the PR comment and the site read the record's digest and find its results without a cluster;
- keyed by the record's digest, so the PR's candidate (no tag yet) and the registered version
  made from that record share one result.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lepton_ci.core.errors import GitError, LeptonError
from lepton_ci.core.git import Git

PREFIX = "refs/lepton-ci/shadow/"
_DIGEST = re.compile(r"^(sha256|blake3):([0-9a-f]{64})$")
_ENV = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ShadowError(LeptonError):
    """A shadow rollout could not run, or its result could not be read or kept."""


class ShadowResult(BaseModel):
    """One shadow rollout's comparison of a candidate's answers with the serving revision's."""

    model_config = ConfigDict(extra="forbid")
    model: str
    env: str
    version: str
    record_digest: str
    image: str = ""
    serving_version: str = ""
    kind: Literal["classification", "regression"]
    verdict: Literal["pass", "fail"]
    reason: str
    wanted: int = Field(description="requests the rollout asked to compare")
    seen: int = Field(description="requests mirrored to the comparator")
    compared: int = Field(description="requests answered by both and compared")
    predictions: int = Field(0, description="predictions compared (a request may hold several)")
    agreed: int = Field(0, description="classification: predictions both answered alike")
    agreement: float | None = None
    min_agreement: float | None = None
    mean_abs_error: float | None = None
    max_abs_error: float | None = None
    max_error: float | None = None
    candidate_errors: int = Field(0, description="requests the candidate failed or mis-shaped")
    incomparable: dict[str, int] = Field(
        default_factory=dict, description="requests not judged, by why (the serving one failed…)"
    )
    dropped: int = Field(
        0, description="mirrored while the comparison was at its pace or its queue full"
    )
    examples: list[str] = Field(default_factory=list, description="the first disagreements")
    seconds: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    revision: int | None = Field(None, description="the environment's revision of this run")
    who: str = ""
    run_url: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        """One line: the measure against its bound, on how many requests."""
        if self.kind == "classification":
            measure = (
                f"agreement {self.agreement:.4f} (min {self.min_agreement:g})"
                if self.agreement is not None and self.min_agreement is not None
                else "agreement not measured"
            )
        else:
            measure = (
                f"mean absolute error {self.mean_abs_error:.6g} (max {self.max_error:g})"
                if self.mean_abs_error is not None and self.max_error is not None
                else "error not measured"
            )
        extra = []
        if self.candidate_errors:
            extra.append(f"{self.candidate_errors} candidate errors")
        skipped = sum(self.incomparable.values())
        if skipped:
            extra.append(f"{skipped} not comparable")
        if self.dropped:
            extra.append(f"{self.dropped} dropped")
        tail = f"; {', '.join(extra)}" if extra else ""
        return f"{measure} on {self.compared}/{self.wanted} requests ({self.seen} mirrored){tail}"


def ref_of(record_digest: str) -> str:
    m = _DIGEST.match(record_digest)
    if not m:
        raise ShadowError(f"`{record_digest}` is not a record digest (ALGO:<64 hex>)")
    return f"{PREFIX}{m[1]}-{m[2]}"


def write(git: Git, result: ShadowResult) -> str:
    """Add (or replace) `result.env`'s result in its record's ref, as a new commit whose parent
    is the ref's last; returns the ref. Two writers cannot lose each other's result: the ref
    moves only from the commit this one was built on."""
    if not _ENV.match(result.env):
        raise ShadowError(f"environment name `{result.env}` is not valid")
    ref = ref_of(result.record_digest)
    for _ in range(3):
        old = _tip(git, ref)
        entries = _entries(git, old) if old else {}
        blob = git.run(
            ["hash-object", "-w", "--stdin"], input=result.model_dump_json(indent=2) + "\n"
        ).stdout.strip()
        entries[f"{result.env}.json"] = blob
        tree = git.run(
            ["mktree"], input="".join(f"100644 blob {b}\t{n}\n" for n, b in sorted(entries.items()))
        ).stdout.strip()
        parent = ["-p", old] if old else []
        message = (
            f"Shadow of {result.model} {result.version} in {result.env}: {result.verdict}\n\n"
            f"{result.summary()}\n"
        )
        commit = git.run(
            ["commit-tree", tree, *parent, "-m", message], env=git.identity_env()
        ).stdout.strip()
        if git.run(["update-ref", ref, commit, old or ""], check=False).returncode == 0:
            return ref
    raise ShadowError(f"{ref} kept moving while the shadow result was written; try again")


def _tip(git: Git, ref: str) -> str | None:
    proc = git.run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], check=False)
    return proc.stdout.strip() or None


def _entries(git: Git, commit: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in filter(None, git.run(["ls-tree", "-z", commit]).stdout.split("\0")):
        meta, _, name = entry.partition("\t")
        kind, obj = meta.split()[1:3]
        if kind == "blob" and name.endswith(".json"):
            out[name] = obj
    return out


def read(git: Git, record_digest: str, remote: str | None = "origin") -> dict[str, ShadowResult]:
    """The results of a record, by environment, as `remote` has them (fetched; this clone's
    when it cannot be reached, or with `remote=None`).
    A result that does not parse is left out (it cannot pass a gate)."""
    ref = ref_of(record_digest)
    tip = _tip(git, ref)
    if remote is not None and remote in git.remotes():
        # Always asked, not only when this clone lacks the ref: a clone that kept an older
        # result (a persistent runner, a laptop) would judge by a verdict since replaced.
        # The remote's is taken when it is this clone's or later; a result kept here and not
        # pushed (refused push) is newer than the remote's and stays.
        proc = git.run(["fetch", "--quiet", remote, ref], check=False, timeout=120)
        if proc.returncode != 0 and not _absent(proc.stderr) and tip is None:
            raise GitError(f"could not fetch {ref} from {remote}: {proc.stderr.strip()}")
        if proc.returncode == 0:
            theirs = git.run(["rev-parse", "FETCH_HEAD"]).stdout.strip()
            if tip is None or _ancestor(git, tip, theirs):
                git.run(["update-ref", ref, theirs, tip or ""])
                tip = theirs
    if tip is None:
        return {}
    results: dict[str, ShadowResult] = {}
    for name, blob in _entries(git, tip).items():
        text = git.run(["cat-file", "blob", blob]).stdout
        try:
            r = ShadowResult.model_validate_json(text)
        except ValidationError:
            continue
        if r.env == name.removesuffix(".json") and r.record_digest == record_digest:
            results[r.env] = r
    return results


def _ancestor(git: Git, a: str, b: str) -> bool:
    return git.run(["merge-base", "--is-ancestor", a, b], check=False).returncode == 0


def _absent(stderr: str) -> bool:
    return "couldn't find remote ref" in stderr or "no such ref" in stderr


def recorded(git: Git) -> set[str]:
    """The record digests that have shadow results in this clone (one git call), so a page
    per version reads only the refs that exist."""
    out = git.run(["for-each-ref", "--format=%(refname)", PREFIX], check=False).stdout
    names = (line[len(PREFIX) :] for line in out.split() if line.startswith(PREFIX))
    return {name.replace("-", ":", 1) for name in names}


def fetch(git: Git, pattern: str = "*", remote: str = "origin") -> str | None:
    """Bring this clone's shadow refs up to the remote's (`pattern`: one ref's name after the
    prefix, or `*` for all), so a result is added on top of what others pushed. Returns why
    not (no such remote, git's refusal), None once fetched or when the remote has none."""
    if remote not in git.remotes():
        return f"no remote `{remote}`"
    spec = f"+{PREFIX}{pattern}:{PREFIX}{pattern}"
    proc = git.run(["fetch", "--quiet", remote, spec], check=False, timeout=120)
    if proc.returncode != 0 and not _absent(proc.stderr):
        return proc.stderr.strip()[-400:] or f"git fetch exited {proc.returncode}"
    return None


def push(git: Git, record_digest: str, remote: str = "origin") -> str | None:
    """Push the record's shadow ref, so a deploy on another runner finds the result. Returns
    why it was not pushed (no such remote, or git's refusal), None once pushed."""
    if remote not in git.remotes():
        return f"no remote `{remote}`"
    ref = ref_of(record_digest)
    proc = git.run(["push", "--quiet", remote, f"{ref}:{ref}"], check=False, timeout=120)
    if proc.returncode != 0:
        return proc.stderr.strip()[-400:] or f"git push exited {proc.returncode}"
    return None

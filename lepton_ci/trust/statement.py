"""The in-toto Statement v1 that register and build sign: SLSA provenance v1 of a version.

A version's statement names the model's artifacts as subjects (sha256, which every in-toto
tool checks, plus the record's own blake3 hash as an annotation) and carries, as resolved
dependencies, the commit and the evidence record (its sha256 and blake3 digest): the link from
a signature to the record in the version tag's message. An image's statement names the image
digest as its subject and the version and record it was built from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import TrustError

if TYPE_CHECKING:
    from lepton_ci.core.git import Git
    from lepton_ci.core.record import Record

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
REGISTER_TYPE = "https://lepton-ci.dev/attestations/register/v1"
BUILD_TYPE = "https://lepton-ci.dev/attestations/build/v1"
RECORD_MEDIA = "application/vnd.lepton-ci.record.v1+json"
RECORD_DEP = "evidence-record"
COMMIT_DEP = "commit"
RECORD_HASH = "dev.lepton-ci.record-hash"  # subject annotation: the artifact's hash in the record


def record_digests(rec: Record) -> dict[str, str]:
    """The record's digests as the tag's message holds it: sha256 (any tool can check it) and
    blake3 (what lepton-ci writes as `record-digest` everywhere else)."""
    text = rec.to_json().encode()
    return {"sha256": hashlib.sha256(text).hexdigest(), "blake3": rec.digest().split(":", 1)[1]}


@dataclass(frozen=True)
class RunFacts:
    """Where and by what a statement was made: the repository, the workflow, the run."""

    repository: str  # a URL without credentials, or "" when unknown
    ref: str | None
    workflow: str | None  # .github/workflows/x.yml
    workflow_ref: str | None  # the ref the workflow file was read at
    builder: str  # the workflow's URL at its ref, or "local"
    invocation: str | None  # the run and attempt's URL
    runner: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, env: Mapping[str, str], git: Git | None = None) -> RunFacts:
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo = env.get("GITHUB_REPOSITORY", "")
        wf = env.get("GITHUB_WORKFLOW_REF", "")  # OWNER/NAME/.github/workflows/x.yml@REF
        runner = {
            k.removeprefix("RUNNER_").lower(): env[k]
            for k in ("RUNNER_NAME", "RUNNER_OS", "RUNNER_ARCH", "RUNNER_ENVIRONMENT")
            if env.get(k)
        }
        if repo and wf:
            path, _, wf_ref = wf.removeprefix(f"{repo}/").partition("@")
            run = env.get("GITHUB_RUN_ID")
            attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
            return cls(
                repository=f"{server}/{repo}",
                ref=env.get("GITHUB_REF") or None,
                workflow=path,
                workflow_ref=wf_ref or None,
                builder=f"{server}/{wf}",
                invocation=f"{server}/{repo}/actions/runs/{run}/attempts/{attempt}"
                if run
                else None,
                runner=runner,
            )
        url, branch = "", None
        if git is not None:
            url = _without_credentials(git.run(["remote", "get-url", "origin"], check=False).stdout)
            branch = git.branch()
        return cls(
            repository=url,
            ref=f"refs/heads/{branch}" if branch else None,
            workflow=None,
            workflow_ref=None,
            builder="local",
            invocation=None,
            runner=runner or {"name": "local"},
        )


def _without_credentials(url: str) -> str:
    """An origin URL may carry a token (https://x-access-token:T@host/...): never sign it."""
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", url.strip())


def _dependencies(rec: Record, tag: str | None, facts: RunFacts) -> list[dict[str, Any]]:
    where = f"git+{facts.repository}" if facts.repository else "git"
    commit = {"name": COMMIT_DEP, "uri": where, "digest": {"gitCommit": rec.git.sha}}
    record: dict[str, Any] = {
        "name": RECORD_DEP,
        "mediaType": RECORD_MEDIA,
        "digest": record_digests(rec),
    }
    if tag:
        record["uri"] = f"{where}@refs/tags/{tag}"
    return [commit, record]


def _predicate(
    build_type: str, params: dict[str, Any], rec: Record, tag: str | None, facts: RunFacts
) -> dict[str, Any]:
    external: dict[str, Any] = {"repository": facts.repository, "ref": facts.ref, **params}
    if facts.workflow:
        external["workflow"] = {"path": facts.workflow, "ref": facts.workflow_ref}
    metadata = {"invocationId": facts.invocation} if facts.invocation else {}
    return {
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": external,
            "internalParameters": {"runner": facts.runner},
            "resolvedDependencies": _dependencies(rec, tag, facts),
        },
        "runDetails": {"builder": {"id": facts.builder}, "metadata": metadata},
    }


def _encode(subjects: list[dict[str, Any]], predicate: dict[str, Any]) -> bytes:
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": SLSA_PROVENANCE,
        "predicate": predicate,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def version_statement(rec: Record, tag: str, sha256s: Mapping[str, str], facts: RunFacts) -> bytes:
    """The statement of a registered version: `sha256s` maps each artifact (its name in the
    record's outputs) to the sha256 of its bytes, checked against the record by the caller."""
    subjects = [
        {
            "name": name,
            "digest": {"sha256": sha256s[name]},
            "annotations": {RECORD_HASH: entry.hash},
        }
        for name, entry in sorted(rec.outputs.items())
    ]
    if not subjects:
        raise TrustError(
            f"{tag}: the record lists no artifacts (`outputs:`), so there is nothing to sign",
            hint="declare the model's files under `outputs:` in lepton.yaml, then run again",
        )
    params = {"model": rec.model, "version": rec.candidate_version, "tag": tag}
    return _encode(subjects, _predicate(REGISTER_TYPE, params, rec, tag, facts))


def image_statement(
    image: str, digest: str, rec: Record, tag: str | None, facts: RunFacts
) -> bytes:
    """The statement of a built image: its manifest digest, and the version it holds."""
    algo, _, hexdigest = digest.partition(":")
    subjects = [{"name": image, "digest": {algo: hexdigest}}]
    params = {"model": rec.model, "version": rec.candidate_version, "tag": tag, "image": image}
    return _encode(subjects, _predicate(BUILD_TYPE, params, rec, tag, facts))


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str | None
    record_hash: str | None


@dataclass(frozen=True)
class Statement:
    """What verify reads from a signed statement (after the signature held)."""

    subjects: list[Subject]
    build_type: str
    params: dict[str, Any]
    record: dict[str, str]  # the evidence record's digests
    commit: str | None

    @classmethod
    def parse(cls, payload: bytes, where: str) -> Statement:
        try:
            doc = json.loads(payload)
            if doc.get("_type") != STATEMENT_TYPE:
                raise ValueError(f"`_type` is {doc.get('_type')!r}, not {STATEMENT_TYPE}")
            if doc.get("predicateType") != SLSA_PROVENANCE:
                raise ValueError(f"`predicateType` is {doc.get('predicateType')!r}")
            build = doc["predicate"]["buildDefinition"]
            deps = {d.get("name"): d for d in build.get("resolvedDependencies", [])}
            subjects = [
                Subject(
                    s["name"],
                    s["digest"].get("sha256"),
                    (s.get("annotations") or {}).get(RECORD_HASH),
                )
                for s in doc["subject"]
            ]
            return cls(
                subjects=subjects,
                build_type=build["buildType"],
                params=build.get("externalParameters") or {},
                record=dict((deps.get(RECORD_DEP) or {}).get("digest") or {}),
                commit=((deps.get(COMMIT_DEP) or {}).get("digest") or {}).get("gitCommit"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise TrustError(
                f"{where}: the signed payload is not lepton-ci's in-toto statement ({e})",
                hint="re-sign the version with `lepton-ci register`",
            ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

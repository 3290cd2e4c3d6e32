"""Which record an image is built from, and which tags it may take.

- A version's image is built from the record of its tag: a re-run of a registered commit
  (another `created_at`, maybe other weights) never stands in for the registered version.
- Release tags (`X.Y.Z`, `X.Y`) only for a registered version; the last run of a commit that
  is not registered gets `sha-<short>` only. A record made on a dirty work tree gets nothing.
- `X.Y` moves only to the newest registered release of its line: building an older version
  again never takes it back.
- An immutable tag (`X.Y.Z`, `sha-<short>`) that the registry already has is never moved to
  other content: an image of the same commit and artifacts is reused as it is (no build), any
  other is a refusal that names the tag, the digest it holds and the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from lepton_ci.core.context import Context
from lepton_ci.core.errors import ImageTagTaken, RecordError, RegistryError
from lepton_ci.core.oci_client import OCIClient
from lepton_ci.core.record import Record
from lepton_ci.core.semver import Version
from lepton_ci.image import metadata as imagemeta
from lepton_ci.versions import evidence
from lepton_ci.versions.registry import Registry

P = imagemeta.PREFIX


@dataclass
class Release:
    """The record to build, and what the version registry says about it."""

    rec: Record
    registered: bool  # the record is a registered version's (its tag's record)
    newest_of_line: bool  # no newer registered release shares its X.Y
    notes: list[str] = field(default_factory=list)


def choose(ctx: Context, model: str, version: str | None) -> Release:
    """The registered record of `version`; else the last run's, replaced by its commit's
    version tag's record when that commit is registered under the run's version."""
    reg = Registry(ctx.git)
    state = reg.read(model)
    rec = evidence.load(ctx, model, version)
    notes: list[str] = []
    if rec.git.dirty:
        untracked = f" (inputs git does not track: {', '.join(rec.git.untracked)})"
        raise RecordError(
            f"the {'record of ' + version if version else 'last run'} of {model} was made on a "
            f"work tree with uncommitted changes{untracked if rec.git.untracked else ''}: its "
            f"model was not made from commit {rec.git.sha[:7]}, so no image is built from it",
            hint="commit the changes, `lepton-ci run`, then `lepton-ci build`",
        )
    registered = version is not None
    if version is None and ctx.git.head() != rec.git.sha:
        notes.append(
            f"building the last run of {model}, commit {rec.git.sha[:7]}, not HEAD "
            f"{ctx.git.head()[:7]} (`lepton-ci run` first to build HEAD)"
        )
    if version is None and rec.candidate_version:
        want = Version.parse(rec.candidate_version)
        # the run's version when it is registered there, else what `register --version` chose
        on = sorted(state.on_commit(model, rec.git.sha), key=lambda v: v.version != want)
        tagged = reg.record(on[0].tag) if on else None
        if tagged is not None:
            if tagged.digest() != rec.digest():
                notes.append(
                    f"the last run of {model} re-ran {on[0].tag}'s commit: building the "
                    "record registered in the tag, not the re-run's"
                )
            rec, registered = tagged, True
        else:
            why = f"{on[0].tag} carries no evidence record" if on else "it is not registered"
            notes.append(
                f"{model} {rec.candidate_version}: {why}, so the image gets no release tags "
                "(`lepton-ci register` first to give it X.Y.Z and X.Y)"
            )
    newest = True
    if registered and rec.candidate_version and rec.verdict == "fail":
        newest = False  # a version that failed its gates is never what `X.Y` points at
        v = Version.parse(rec.candidate_version)
        if not v.pre:
            notes.append(
                f"{model} {rec.candidate_version} failed its gates (registered with "
                f"--allow-failed): {imagemeta.floating_tag(v)} is left where it is"
            )
    elif registered and rec.candidate_version:
        v = Version.parse(rec.candidate_version)
        line = [
            i.version
            for i in state.versions(model)
            if (i.version.major, i.version.minor) == (v.major, v.minor) and not i.version.pre
        ]
        newer = [x for x in line if x.sort_key() > v.sort_key()]
        if newer and not v.pre:
            newest = False
            notes.append(
                f"{model}@{max(newer, key=Version.sort_key)} is newer than {v}: "
                f"{imagemeta.floating_tag(v)} is left where it is"
            )
    return Release(rec, registered, newest, notes)


_IMMUTABLE = re.compile(
    r"sha-[0-9a-f]{7,40}|\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:_[0-9A-Za-z._-]+)?"
)


def immutable(tag: str) -> bool:
    """Tags that never move to other content: a version's `X.Y.Z` and a commit's `sha-...`."""
    return bool(_IMMUTABLE.fullmatch(tag))


def floating(tag: str, rec: Record) -> bool:
    """Tags that move by design: `X.Y` and `pr-<N>`."""
    if tag.startswith("pr-"):
        return True
    if not rec.candidate_version:
        return False
    return tag == imagemeta.floating_tag(Version.parse(rec.candidate_version))


def existing_image(client: OCIClient, repo: str, rec: Record, tags: list[str]) -> str | None:
    """The digest of an image of this release already under one of `tags` (immutable tags
    only), else None. An immutable tag that holds anything else is an ImageTagTaken.

    `sha-<short>` names a commit and its artifacts, not a version: an image of the same commit
    and artifacts that an earlier, unregistered run pushed under another version label is
    the same content, so the tag moves to the registered build (which is not a reuse)."""
    reuse: str | None = None
    for tag in tags:
        if floating(tag, rec):
            continue
        digest = client.manifest_digest(repo, tag)
        if digest is None:
            continue
        labels = _labels(client, repo, tag)
        if _same_content(labels, rec):
            reuse = reuse or digest
        elif not (tag.startswith("sha-") and _same_commit_and_artifacts(labels, rec)):
            raise _taken(client.registry, repo, tag, digest, labels, rec)
    return reuse


def keep_floating_forward(
    client: OCIClient, repo: str, rec: Record, tags: list[str]
) -> tuple[list[str], list[str]]:
    """`tags` without `X.Y` when the image `X.Y` holds now is of a newer version: the
    registry's own label decides, so a clone without the newer version tags (`--no-tags`)
    never takes it backwards. Returns (tags, notes)."""
    if not rec.candidate_version:
        return tags, []
    v = Version.parse(rec.candidate_version)
    ftag = imagemeta.floating_tag(v)
    if ftag not in tags or client.manifest_digest(repo, ftag) is None:
        return tags, []
    held = _labels(client, repo, ftag).get(f"{P}.version") or ""
    try:
        there = Version.parse(held)
    except RegistryError:
        return tags, []  # not a lepton-ci version label: X.Y moves as before
    if there.sort_key() <= v.sort_key():
        return tags, []
    note = (
        f"{client.registry}/{repo}:{ftag} holds {rec.model} {held}, newer than "
        f"{rec.candidate_version}: {ftag} is left where it is"
    )
    return [t for t in tags if t != ftag], [note]


def _labels(client: OCIClient, repo: str, tag: str) -> dict[str, str]:
    manifest, _ = client.image_manifest(repo, tag)
    config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    labels = (config.get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def _same_content(labels: dict[str, str], rec: Record) -> bool:
    """The same record; or the same version, commit and artifacts (another run of a commit,
    which restored the same model, differs only in when and where it ran)."""
    if labels.get(f"{P}.record-digest") == rec.digest():
        return True
    return labels.get(f"{P}.version") == (
        rec.candidate_version or ""
    ) and _same_commit_and_artifacts(labels, rec)


def _same_commit_and_artifacts(labels: dict[str, str], rec: Record) -> bool:
    return (
        labels.get(f"{P}.model") == rec.model
        and labels.get("org.opencontainers.image.revision") == rec.git.sha
        and labels.get(f"{P}.outputs-digest") == imagemeta.outputs_digest(rec)
    )


def _taken(
    registry: str, repo: str, tag: str, digest: str, labels: dict[str, str], rec: Record
) -> ImageTagTaken:
    if f"{P}.model" in labels:
        held = (
            f"an image of {labels[f'{P}.model']} {labels.get(f'{P}.version') or '(no version)'} "
            f"from commit {labels.get('org.opencontainers.image.revision', '?')[:7]}, record "
            f"{labels.get(f'{P}.record-digest', '?')[:19]}"
        )
    else:
        held = "an image not built by lepton-ci"
    if tag.startswith("sha-"):
        fix = (
            f"{tag} keeps the image of an earlier run of commit {rec.git.sha[:7]} with other "
            "artifacts (the training is not reproducible); commit and run again to build "
            "under a new commit, or, to replace it on purpose, delete the tag in the registry "
            "first"
        )
    else:
        fix = (
            "a released image is never replaced: commit the change and register a new "
            "version (`lepton-ci run`, `lepton-ci register`, `lepton-ci build`); to replace "
            "it on purpose, delete the tag in the registry first"
        )
    return ImageTagTaken(
        f"image tag {registry}/{repo}:{tag} already holds {digest} ({held}), not this build "
        f"of {rec.model} {rec.candidate_version or ''} (commit {rec.git.sha[:7]}, record "
        f"{rec.digest()[:19]}); nothing was pushed",
        hint=fix,
    )

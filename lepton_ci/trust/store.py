"""A version's signature bundles in git, beside its tag and never in its message.

`refs/lepton-ci/attestations/<tag>` points at a commit (no parent) whose tree holds the
bundles: `statement.sigstore.json` (the signed in-toto statement) and, when the key allows,
`model.sig` (OpenSSF model-signing's bundle over the model files). Why a ref of our own:
- GTO's tag grammar and messages stay as they are (GTO reads only refs/tags);
- the ref is pushed with the tag in one `git push --atomic`: the remote gets both or neither;
- a fresh clone fetches it on demand (`git fetch origin refs/lepton-ci/...`), one version's
  bundles, not every version's (a notes ref would fetch every version's notes at once).
"""

from __future__ import annotations

from lepton_ci.core.errors import GitError, TrustError
from lepton_ci.core.git import Git

PREFIX = "refs/lepton-ci/attestations/"
STATEMENT = "statement.sigstore.json"
MODEL_SIG = "model.sig"


def ref_of(tag: str) -> str:
    return f"{PREFIX}{tag}"


def write(git: Git, tag: str, files: dict[str, bytes], *, replace: bool = False) -> str:
    """Commit `files` and point the tag's attestation ref at the commit; returns the ref.
    Without `replace`, an existing ref is an error (a version is signed once)."""
    entries = []
    for name in sorted(files):
        blob = git.run(["hash-object", "-w", "--stdin"], input=files[name].decode()).stdout.strip()
        entries.append(f"100644 blob {blob}\t{name}\n")
    tree = git.run(["mktree"], input="".join(entries)).stdout.strip()
    commit = git.run(
        ["commit-tree", tree, "-m", f"Attestations of {tag}"], env=git.identity_env()
    ).stdout.strip()
    ref = ref_of(tag)
    old = [] if replace else [""]  # "": the ref must not exist yet
    proc = git.run(["update-ref", ref, commit, *old], check=False)
    if proc.returncode != 0:
        raise TrustError(
            f"{tag} already has attestations ({ref})",
            hint="a version is signed once; register a new version",
        )
    return ref


def delete(git: Git, tag: str) -> None:
    git.run(["update-ref", "-d", ref_of(tag)], check=False)


def statement(git: Git, tag: str, remote: str | None = "origin") -> bytes | None:
    """The signed statement's bundle of `tag` (one git call when this clone has it)."""
    proc = git.run(["cat-file", "blob", f"{ref_of(tag)}:{STATEMENT}"], check=False)
    if proc.returncode == 0:
        return proc.stdout.encode()
    files = read(git, tag, remote)
    return None if files is None else files.get(STATEMENT)


def read(git: Git, tag: str, remote: str | None = "origin") -> dict[str, bytes] | None:
    """The bundles of `tag`: from this clone, else fetched from `remote`; None if none."""
    ref = ref_of(tag)
    if not git.ok("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
        if remote is None or remote not in git.remotes():
            return None
        proc = git.run(["fetch", "--quiet", remote, f"+{ref}:{ref}"], check=False, timeout=120)
        if proc.returncode != 0:
            if "couldn't find remote ref" in proc.stderr or "no such ref" in proc.stderr:
                return None
            raise GitError(f"could not fetch {ref} from {remote}: {proc.stderr.strip()}")
    listing = git.run(["ls-tree", "-z", ref]).stdout
    files: dict[str, bytes] = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        if meta.split()[1] != "blob":
            continue
        files[name] = git.run(["cat-file", "blob", meta.split()[2]]).stdout.encode()
    return files

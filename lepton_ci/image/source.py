"""What goes into an image: the record's commit, read from git, and its artifacts, by hash.

`build` never reads code or lepton.yaml from the work tree: an uncommitted edit, or today's
files when an old version is built, would ship under a release tag that names another commit.
The commit's files are checked out into `<cache.dir>/checkout/<model>` (emptied before and
after; one path, so the stat cache keeps one entry per file), a git repository of its own that
shares the project's objects (git alternates): nothing in the project's repository is written,
and `git log` there answers as of the record's commit (each layer's mtime is the commit that
last changed what it holds). The artifacts, which git does not hold, are linked in from the
work tree or the run-cache, each only when its bytes hash to the record's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core import config as config_mod
from lepton_ci.core.config import LoadedConfig, ModelConfig
from lepton_ci.core.errors import GitError, LeptonError, RecordError
from lepton_ci.core.filelock import exclusive
from lepton_ci.core.git import Git
from lepton_ci.core.hashing import StatCache
from lepton_ci.core.paths import slug
from lepton_ci.core.record import Record
from lepton_ci.run.cache import RunCache


@dataclass(frozen=True)
class Source:
    """The record's commit, checked out (the parts an image needs), with its artifacts."""

    rec: Record
    config: LoadedConfig  # lepton.yaml as committed, read from the checkout
    cfg: ModelConfig
    model_dir: Path  # in the checkout
    git: Git  # the checkout's own repository (HEAD = the record's commit)

    @property
    def short(self) -> str:
        return self.rec.git.sha[:7]


def what(rec: Record) -> str:
    version = f" {rec.candidate_version}" if rec.candidate_version else ""
    return f"{rec.model}{version} (commit {rec.git.sha[:7]})"


@contextmanager
def checkout(
    git: Git,
    config_path: Path,
    rec: Record,
    model: str,
    *,
    cache_dir: Path,
    stat: StatCache,
) -> Iterator[Source]:
    """The record's commit checked out under the cache directory, removed afterwards: the
    model's directory, the Docker context and lepton.yaml. One build of a model at a time
    uses it (a second one waits)."""
    sha = rec.git.sha
    if not git.ok("cat-file", "-e", f"{sha}^{{commit}}"):
        raise GitError(
            f"commit {sha[:7]} of {what(rec)} is not in this clone",
            hint="fetch it: `git fetch --tags` (in Actions, actions/checkout with "
            "`fetch-depth: 0`)",
        )
    top = git.toplevel().resolve()
    try:
        cfg_rel = config_path.resolve().relative_to(top).as_posix()
    except ValueError:
        raise RecordError(
            f"{config_path} is outside the repository {top}: an image is built from the "
            "commit's own lepton.yaml",
            hint="keep lepton.yaml in the repository (and commit it)",
        ) from None
    root = (cache_dir / "checkout" / slug(model)).resolve()

    def busy(holder: str) -> LeptonError:
        return LeptonError(
            f"another build of {model} is using {root} ({holder})",
            hint="wait for it to finish, then build again",
        )

    with exclusive(root.with_name(root.name + ".lock"), timeout=600, what="build", busy=busy):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            yield _checkout(git, root, top, cfg_rel, rec, model, cache_dir, stat)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _checkout(
    git: Git,
    root: Path,
    top: Path,
    cfg_rel: str,
    rec: Record,
    model: str,
    cache_dir: Path,
    stat: StatCache,
) -> Source:
    sha = rec.git.sha
    tree = _share_objects(git, root, sha)
    if not tree.run("cat-file", "-e", f"{sha}:{cfg_rel}", check=False):
        raise RecordError(
            f"{cfg_rel} is not in commit {sha[:7]} of {what(rec)}",
            hint="an image is built from the commit's own lepton.yaml: build a version "
            "registered after the file was committed",
        )
    tree.run("checkout", "-q", sha, "--", cfg_rel)
    loaded = config_mod.load(root / cfg_rel)
    _, cfg = loaded.model(model)
    model_dir = loaded.model_dir(cfg)
    # the Docker context may lie outside the model's directory (`image.context: ..`)
    extra = (cfg.image.context,) if cfg.image is not None else ()
    wanted = {model_dir, *((model_dir / d).resolve() for d in extra)}
    specs = sorted({_inside(root, d, rec) for d in wanted})
    tree.run("checkout", "-q", sha, "--", *specs)
    work_model_dir = top / model_dir.relative_to(root)
    _link_artifacts(rec, model_dir, work_model_dir, RunCache(cache_dir), stat)
    return Source(rec, loaded, cfg, model_dir, Git(model_dir))


class _Tree:
    """git commands on the checkout's own repository only: explicit --git-dir/--work-tree and
    index, so a GIT_DIR or GIT_INDEX_FILE in the environment (lepton-ci run from a git hook)
    can never point them at the project's repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / ".git"
        self.git = Git(root)

    def run(self, *args: str, check: bool = True) -> bool:
        env = {
            "GIT_INDEX_FILE": str(self.dir / "index"),
            "GIT_OBJECT_DIRECTORY": str(self.dir / "objects"),
        }
        argv = ["--git-dir", str(self.dir), "--work-tree", str(self.root), *args]
        return self.git.run(argv, check=check, env=env).returncode == 0


def _share_objects(git: Git, root: Path, sha: str) -> _Tree:
    """An empty repository at `root` that reads the project's objects, HEAD at `sha`."""
    objects = git.out("rev-parse", "--path-format=absolute", "--git-path", "objects")
    shallow = Path(git.out("rev-parse", "--path-format=absolute", "--git-path", "shallow"))
    tree = _Tree(root)
    tree.run("init", "-q")
    (tree.dir / "objects" / "info" / "alternates").write_text(objects + "\n")
    if shallow.is_file():  # a shallow clone: history ends where the project's does
        shutil.copyfile(shallow, tree.dir / "shallow")
    tree.run("update-ref", "--no-deref", "HEAD", sha)
    return tree


def _inside(root: Path, directory: Path, rec: Record) -> str:
    try:
        rel = directory.relative_to(root).as_posix()
    except ValueError:
        raise RecordError(
            f"{directory} is outside the repository (at commit {rec.git.sha[:7]})",
            hint="keep `path:` and `image.context` inside the repository",
        ) from None
    return rel if rel != "." else ":/"


def _link_artifacts(
    rec: Record, model_dir: Path, work_dir: Path, cache: RunCache, stat: StatCache
) -> None:
    """Each artifact of the record, linked from wherever its exact bytes are."""
    for rel, entry in sorted(rec.outputs.items()):
        target = model_dir / rel
        if target.is_file():  # committed to git: the commit's bytes must be the record's
            if stat.hash(target) != entry.hash:
                raise _mismatch(rec, rel, f"the committed {rel} differs from it", committed=True)
            continue
        work = work_dir / rel
        if work.is_file() and stat.hash(work) == entry.hash:
            found: Path | None = work
        else:
            found = cache.artifact(entry.hash)
        if found is None:
            why = (
                f"the work tree's {rel} differs from it"
                if work.is_file()
                else f"{rel} is not in the work tree"
            )
            raise _mismatch(rec, rel, f"{why}, and the run-cache ({cache.dir}) does not hold it")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(found.resolve())
    stat.save()


def _mismatch(rec: Record, rel: str, why: str, *, committed: bool = False) -> RecordError:
    version = rec.candidate_version or "it"
    if committed:
        hint = (
            f"the commit {rec.git.sha[:7]} carries other bytes than its record names: register "
            "a new version from a `lepton-ci run` of a clean commit"
        )
    else:  # `lepton-ci run` would be a miss here: the cache has no copy left to restore
        hint = (
            f"restore the run-cache {version} was trained with (in CI: its actions/cache "
            f"entry) and build {version} again; or retrain at its commit (`git checkout "
            f"{rec.git.sha[:7]}`, `lepton-ci run`): the build then works only if training "
            "reproduces the same bytes, else register a new version"
        )
    return RecordError(
        f"artifact {rel} of {what(rec)} does not match its evidence record: {why}", hint=hint
    )

"""The one object through which lepton-ci talks to git; tests hand in a Git for a tmp repo."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lepton_ci.core.errors import GitError

DEFAULT_TIMEOUT = 60.0


# Commands after which what was read about refs may be stale (listing tags is not one).
_WRITES = {
    "tag",
    "push",
    "fetch",
    "pull",
    "update-ref",
    "fast-import",
    "commit",
    "reset",
    "checkout",
    "switch",
    "merge",
    "rebase",
    "pack-refs",
    "gc",
}


class Git:
    def __init__(self, cwd: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.cwd = Path(cwd)
        self.timeout = timeout
        # What readers learned from refs (e.g. the tag registry), kept for one command and
        # dropped by any git call that may change refs, so a command reads the tags once.
        self.memo: dict[object, object] = {}
        self.sticky: dict[object, object] = {}  # facts no git call changes (the git dir)

    def run(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if args and args[0] in _WRITES and not _lists_tags(args):
            self.memo.clear()
        full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                input=input,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",  # a tag or commit message need not be UTF-8
                env=full_env,
                timeout=timeout or self.timeout,
                check=False,
            )
        except FileNotFoundError as e:
            # Popen reports a missing working directory and a missing program alike.
            if not self.cwd.is_dir():
                raise GitError(
                    f"`git {' '.join(args[:2])}` cannot run in {self.cwd}: no such directory",
                    hint="check the directory given with -C or working-directory",
                ) from e
            raise GitError("git is not installed", hint="install git (apt-get install git)") from e
        except subprocess.TimeoutExpired as e:
            raise GitError(f"`git {' '.join(args[:2])}` timed out after {e.timeout:.0f}s") from e
        if check and proc.returncode != 0:
            if "not a git repository" in proc.stderr:
                raise self._not_a_repository()
            raise GitError(
                f"`git {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def out(self, *args: str) -> str:
        return self.run(args).stdout.strip()

    def ok(self, *args: str) -> bool:
        return self.run(args, check=False).returncode == 0

    # -- facts about the checkout ------------------------------------------------------------

    def _not_a_repository(self) -> GitError:
        return GitError(
            f"{self.cwd} is not inside a git repository",
            hint="run `git init` and commit, or run lepton-ci inside your repository",
        )

    def toplevel(self) -> Path:
        proc = self.run(["rev-parse", "--show-toplevel"], check=False)
        if proc.returncode != 0:
            raise self._not_a_repository()
        return Path(proc.stdout.strip())

    def head(self) -> str:
        """HEAD's commit, asked once per command (kept in `memo`, which a git call that may
        move HEAD drops; a run drops it after the user's commands)."""
        if (head := self.memo.get(("head",))) is not None:
            return head  # type: ignore[return-value]
        proc = self.run(["rev-parse", "--verify", "-q", "HEAD^{commit}"], check=False)
        if proc.returncode != 0:
            self.toplevel()  # not a repository at all says so, rather than "no commits"
            raise GitError("the repository has no commits yet", hint="commit your files first")
        self.memo[("head",)] = sha = proc.stdout.strip()
        return sha

    def branch(self) -> str | None:
        proc = self.run(["symbolic-ref", "-q", "--short", "HEAD"], check=False)
        return proc.stdout.strip() or None

    def branch_and_dirty(self, ignore: Sequence[Path] = ()) -> tuple[str | None, bool]:
        """`branch()` and `dirty()` in one call (git status's machine format names the
        branch in its header)."""
        out = self.run(
            [
                "status",
                "--porcelain=v2",
                "--branch",
                "--no-ahead-behind",
                "--untracked-files=no",
                "--",
                *self._excluded(ignore),
            ]
        ).stdout
        branch: str | None = None
        dirty = False
        for line in out.split("\n"):
            if line.startswith("# branch.head "):
                branch = line[len("# branch.head ") :]
            elif line and not line.startswith("#"):
                dirty = True
        if branch == "(detached)":  # or a branch of that name: symbolic-ref tells them apart
            branch = self.branch()
        return branch, dirty

    def dirty(self, paths: Sequence[str] = (), ignore: Sequence[Path] = ()) -> bool:
        """Tracked files modified or staged; untracked files do not count, nor do the files
        in `ignore` (absolute paths)."""
        out = self.run(
            ["status", "--porcelain", "--untracked-files=no", "--", *paths, *self._excluded(ignore)]
        ).stdout
        return bool(out.strip())

    def _excluded(self, files: Sequence[Path]) -> list[str]:
        """Pathspecs that leave `files` out of a status (with no other pathspec, the rest
        of the tree stays in). Literal: a file named `*.json` is no glob."""
        if not files:
            return []
        top = self.toplevel().resolve()
        out = []
        for f in files:
            try:
                rel = f.resolve().relative_to(top)
            except ValueError:
                continue  # outside the repository: git would refuse the pathspec
            out.append(f":(top,exclude,literal){rel.as_posix()}")
        return out

    def untracked(self, under: Path) -> set[Path]:
        """Files under a directory that git neither tracks nor ignores."""
        out = self.run(["ls-files", "--others", "--exclude-standard", "-z", "--", str(under)])
        return {(self.cwd / p).resolve() for p in out.stdout.split("\0") if p}

    def commit_info(self, rev: str = "HEAD") -> dict[str, str]:
        fmt = "%H%x00%ct%x00%an%x00%ae%x00%s"
        sha, ts, name, email, subject = self.out("log", "-1", f"--format={fmt}", rev).split("\0")
        return {"sha": sha, "time": ts, "author": name, "email": email, "subject": subject}

    def is_shallow(self) -> bool:
        if (shallow := self.memo.get(("shallow",))) is None:
            self._facts()
            shallow = self.memo.get(("shallow",))
        if shallow is None:  # not a repository: say so as any git call does
            shallow = self.out("rev-parse", "--is-shallow-repository") == "true"
        return bool(shallow)

    def common_dir(self) -> Path | None:
        """The git directory a repository's worktrees share (lepton-ci keeps its caches there);
        None outside a repository."""
        if ("common-dir",) not in self.sticky:
            self._facts()
        return self.sticky[("common-dir",)]  # type: ignore[return-value]

    def _facts(self) -> None:
        """Two facts in one call: the common git directory (fixed for good: `sticky`), and
        whether the clone is shallow (a fetch may change that: `memo`)."""
        proc = self.run(["rev-parse", "--git-common-dir", "--is-shallow-repository"], check=False)
        lines = proc.stdout.split("\n")
        if proc.returncode != 0 or len(lines) < 2 or not lines[0]:
            self.sticky[("common-dir",)] = None
            return
        self.sticky[("common-dir",)] = (self.cwd / lines[0]).resolve()
        self.memo[("shallow",)] = lines[1] == "true"

    def merge_base(self, a: str, b: str) -> str | None:
        proc = self.run(["merge-base", a, b], check=False)
        return proc.stdout.strip() or None

    def rev_exists(self, rev: str) -> bool:
        return self.ok("rev-parse", "--verify", "-q", f"{rev}^{{commit}}")

    def remotes(self) -> list[str]:
        return self.out("remote").split()

    def blob(self, rev: str, path: str) -> bytes | None:
        """A file's bytes as committed at `rev` (repository-relative path); None if absent."""
        try:
            proc = subprocess.run(
                ["git", "cat-file", "blob", f"{rev}:{path}"],
                cwd=self.cwd,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise GitError(f"`git cat-file` of {path} timed out after {e.timeout:.0f}s") from e
        return proc.stdout if proc.returncode == 0 else None

    def identity_env(self) -> dict[str, str]:
        """CI runners have no git identity: for the tags and commits lepton-ci writes, fall
        back to the Actions actor, then to lepton-ci."""
        if self.ok("config", "user.email"):
            return {}
        actor = os.environ.get("GITHUB_ACTOR") or "lepton-ci"
        email = (
            f"{actor}@users.noreply.github.com"
            if os.environ.get("GITHUB_ACTOR")
            else "lepton-ci@localhost"
        )
        return {
            "GIT_COMMITTER_NAME": actor,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_NAME": actor,
            "GIT_AUTHOR_EMAIL": email,
        }

    def subjects(self, rev_range: str) -> list[str]:
        """Commit subjects and bodies in a range, newest first, separated by NUL."""
        out = self.run(["log", "--format=%B%x00", rev_range]).stdout
        return [m.strip() for m in out.split("\0") if m.strip()]


def _lists_tags(args: Sequence[str]) -> bool:
    return args[0] == "tag" and any(a in ("-l", "--list", "--merged", "--contains") for a in args)

"""`lepton-ci site`: the versions view, a static site from the tag registry.

The site is built in a scratch directory next to `--out` and swapped in at the end, so a
failure leaves the previous site as it was. `--out` must be empty, missing, or a site this
command wrote before: its `.lepton-site` marker lists every file the build wrote, and a folder
holding anything else (a `.git`, a file of the user's) is refused. Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core.config import LoadedConfig
from lepton_ci.core.errors import ConfigError, InputError, LeptonError
from lepton_ci.core.git import Git
from lepton_ci.core.interrupt import deferred
from lepton_ci.core.templating import template_dir
from lepton_ci.site import data
from lepton_ci.site.pages import Renderer, SiteInfo

MARKER = ".lepton-site"
MARKER_HEAD = "written by `lepton-ci site`; replaced on each build. Files it wrote:\n"
# A site written before the marker listed its files: only what a build writes may be in it.
_OLD_SITE = re.compile(r"^(index\.html|\.nojekyll|assets/[^/]+|models/[^/]+/[^/]+)$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~%/-]*)?$")


@dataclass
class SiteResult:
    out: Path
    models: int
    versions: int
    pages: int
    bytes: int
    seconds: float
    url: str | None

    def text(self) -> str:
        return (
            f"wrote {self.out}: {self.models} models, {self.versions} versions, "
            f"{self.pages} pages, {self.bytes / 1e6:.2f} MB in {self.seconds:.2f} s"
            + (f"; published at {self.url}" if self.url else "")
        )


def repo_url(repo: str | None, env: dict[str, str]) -> tuple[str | None, str]:
    """The repository's web address, from `--repo` or the Actions environment."""
    name = repo or env.get("GITHUB_REPOSITORY") or ""
    if not name:
        return None, ""
    if not _REPO.match(name) or ".." in name:
        raise InputError(
            f"`{name}` is not a repository name",
            hint="give it as OWNER/NAME, e.g. --repo acme/models",
        )
    server = env.get("GITHUB_SERVER_URL") or "https://github.com"
    if not _BASE_URL.match(server):
        raise InputError(f"GITHUB_SERVER_URL `{server}` is not an http(s) URL")
    return f"{server.rstrip('/')}/{name}", name


def check_base_url(url: str | None) -> str | None:
    if not url:
        return None
    if not _BASE_URL.match(url):
        raise InputError(
            f"--base-url `{url}` is not a plain http(s) URL",
            hint="pass the Pages address, e.g. https://acme.github.io/models/",
        )
    return url if url.endswith("/") else url + "/"


def _check_out(out: Path) -> None:
    # The site goes in an existing folder: a typo in --out must not make a tree of folders
    # (and the scratch build beside it) where nobody looks.
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise InputError(
            f"--out {out}: its parent folder {out.parent} {what}; nothing was written",
            hint=f"create it first (mkdir -p {shlex.quote(str(out.parent))}), or choose an "
            "--out in an existing folder",
        )
    if out.exists() and not out.is_dir():
        raise InputError(
            f"--out {out} is a file, not a directory; nothing was written",
            hint="choose a directory, e.g. --out _site",
        )
    if not out.is_dir() or not any(out.iterdir()):
        return
    stranger = _not_site(out)
    if stranger is not None:
        raise InputError(
            f"{out} exists and is not a site lepton-ci wrote ({stranger}); nothing was written",
            hint="choose another --out, or empty that directory",
        )


def _not_site(out: Path) -> str | None:
    """Why `out` is no earlier site, or None if every file in it is one the marker lists."""
    try:
        marker = (out / MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"no readable {MARKER} in it"
    listed = set(marker.splitlines()[1:]) if marker.startswith(MARKER_HEAD) else None
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        if ".git" in dirnames or ".git" in filenames:
            return f"it holds {here.joinpath('.git').relative_to(out).as_posix()}"
        # Links to folders are entries too: never walked into, never taken for site files.
        entries = filenames + [d for d in dirnames if (here / d).is_symlink()]
        for name in entries:
            rel = (here / name).relative_to(out).as_posix()
            if rel == MARKER:
                continue
            if (listed is not None and rel not in listed) or (
                listed is None and not _OLD_SITE.match(rel)
            ):
                return f"{rel} is not a file the site wrote"
    return None


def build(
    git: Git,
    cfg: LoadedConfig | None,
    out: Path,
    *,
    model: str | None = None,
    base_url: str | None = None,
    repo: str | None = None,
    env: dict[str, str] | None = None,
) -> SiteResult:
    t0 = time.perf_counter()
    env = dict(os.environ if env is None else env)
    toplevel = git.toplevel()  # not a repository: say so before anything else
    out = out.resolve()
    _check_out(out)
    url, name = repo_url(repo, env)
    base = check_base_url(base_url)
    models, graph = data.collect(git, cfg, model)
    root = cfg.root if cfg is not None else toplevel
    site = SiteInfo(
        title=f"Models of {name}" if name else "Model registry",
        head=git.head(),
        repo_url=url,
        repo_name=name,
        base_url=base,
    )
    r = Renderer(site, graph, root)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        count = _write(r, models, tmp)
        # Counted before the swap: after it, another build may be replacing `out` already.
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        _swap(tmp, out)
    except OSError as e:  # the place is not writable (read-only, full disk, /proc...)
        raise InputError(
            f"cannot write the site to {out}: {e.strerror or e} ({e.filename or tmp})",
            hint="choose an --out in a directory you can write to",
        ) from None
    finally:
        with deferred():  # a second Ctrl-C must not leave the scratch folder half-removed
            shutil.rmtree(tmp, ignore_errors=True)
    return SiteResult(
        out=out,
        models=len(models),
        versions=sum(len(m.versions) for m in models),
        pages=count,
        bytes=size,
        seconds=time.perf_counter() - t0,
        url=base,
    )


def _swap(tmp: Path, out: Path) -> None:
    """Put the new site in place of the old one. Two builds may finish at once (two tag pushes,
    a user and a hook): each moves whatever is there aside, by its own name, and retries while
    the other's site takes the place; the last one to finish wins, and neither fails."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    for _ in range(20):
        shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError as e:  # another build's site arrived between the two renames
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                with contextlib.suppress(OSError):
                    old.rename(out)  # put the earlier site back: never leave no site at all
                raise
            continue
        shutil.rmtree(old, ignore_errors=True)
        return
    raise LeptonError(f"could not put the site in place at {out}: other builds kept replacing it")


def _write(r: Renderer, models: list[data.Model], dest: Path) -> int:
    dest.mkdir()  # beside --out, whose parent was checked: never a chain of new folders
    assets = dest / "assets"
    assets.mkdir()
    source = template_dir() / "site"
    for name in ("site.css", "compare.js"):
        shutil.copyfile(source / name, assets / name)
    (dest / ".nojekyll").write_text("")  # Pages serves the files as they are
    pages = 1
    jobs: list[tuple[data.Model, int, Path]] = []
    (dest / "index.html").write_text(r.index(models), encoding="utf-8")
    for m in models:
        d = dest / "models" / m.slug
        d.mkdir(parents=True)
        for name, text in r.model_pages(m):
            (d / name).write_text(text, encoding="utf-8")
            pages += 1
        jobs += [(m, i, d) for i in range(len(m.versions))]
        page, js = r.compare(m)
        (d / "compare.html").write_text(page, encoding="utf-8")
        (d / "data.js").write_text(js, encoding="utf-8")
        pages += 1
    _version_pages(r, jobs, _workers(len(jobs)))
    written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    (dest / MARKER).write_text(MARKER_HEAD + "".join(f"{f}\n" for f in written), encoding="utf-8")
    return pages + len(jobs)


PARALLEL_FROM = 200  # version pages; below this a worker process costs more than it saves


def _workers(pages: int) -> int:
    if pages < PARALLEL_FROM or not hasattr(os, "fork"):
        return 1
    # sched_getaffinity is Linux only (macOS has fork but not this): there, every CPU counts.
    getaffinity = getattr(os, "sched_getaffinity", None)
    cpus = len(getaffinity(0)) if getaffinity is not None else (os.cpu_count() or 1)
    return max(1, min(cpus, 4))


def _version_pages(r: Renderer, jobs: list[tuple[data.Model, int, Path]], workers: int) -> None:
    """The bulk of the work: one page per version, split over forked workers when there are
    many (each writes its own files; forking shares the collected data without pickling)."""

    def write(part: int) -> None:
        for m, i, d in jobs[part::workers]:
            v = m.versions[i]
            newer = m.versions[i - 1] if i > 0 else None
            (d / v.page).write_text(r.version_page(m, v, newer), encoding="utf-8")

    if workers == 1:
        write(0)
        return
    ctx = multiprocessing.get_context("fork")
    errors = ctx.SimpleQueue()

    def child(part: int) -> None:
        # Ctrl-C reaches the workers too: they stop at once and quietly (the parent says so,
        # once, and removes what they wrote).
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda signum, _frame: os._exit(128 + signum))
        try:
            write(part)
        except Exception as e:  # handed to the parent, which raises it
            errors.put(f"{type(e).__name__}: {e}")
            raise SystemExit(1) from None

    procs = [ctx.Process(target=child, args=(k,)) for k in range(1, workers)]
    for proc in procs:
        proc.start()
    try:
        write(0)
    finally:
        for proc in procs:
            proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        detail = errors.get() if not errors.empty() else "a worker was killed"
        raise LeptonError(f"writing the version pages failed: {detail}")


def load_config(root: Path, explicit: str | None) -> LoadedConfig | None:
    """lepton.yaml if there is one (a broken one is an error); without one the site is built
    from the tags alone, with no gate bounds or card settings."""
    from lepton_ci.core import config

    try:
        path = config.find_config(explicit, root)
    except ConfigError:
        if explicit:
            raise
        return None
    return config.load(path)

"""`lepton-ci run`: train, evaluate, record lineage and metrics, compare, gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lepton_ci.core import record as record_mod
from lepton_ci.core.config import ModelConfig
from lepton_ci.core.context import Context
from lepton_ci.core.errors import (
    BaselineError,
    CommandFailed,
    GateFailed,
    InputError,
    RecordError,
    RunCacheMiss,
    UntrustedCode,
)
from lepton_ci.core.gha import load_event, pr_head_sha
from lepton_ci.core.hashing import StatCache
from lepton_ci.core.printer import some
from lepton_ci.core.products import products
from lepton_ci.core.record import (
    Baseline,
    CacheInfo,
    Environment,
    GitInfo,
    Lineage,
    Record,
    Step,
    save,
)
from lepton_ci.core.semver import FIRST, Version, bump_from_commits
from lepton_ci.run import baseline as baseline_mod
from lepton_ci.run import cache as runcache
from lepton_ci.run import gates, lineage, snapshot
from lepton_ci.run.commands import run_command
from lepton_ci.run.lock import worktree_lock
from lepton_ci.run.metrics import read_metrics, read_params
from lepton_ci.versions.registry import Registry


@dataclass
class RunOptions:
    use_cache: bool = True
    baseline: str | None = None  # a version to compare with, or "none"
    base_ref: str | None = None  # act as a pull request against this branch
    cached_only: bool = False  # a run-cache miss is an error: this job must not train
    # steps `init` just ran in this work tree, per model: their outputs are in place, so a
    # miss records them instead of training a second time
    adopt: dict[str, list[Step]] = field(default_factory=dict)


def candidate_version(ctx: Context, model: str) -> Version:
    """A registered commit is its version; anything else is the next one after the newest."""
    state = Registry(ctx.git).read(model)
    head = ctx.git.head()
    on_head = state.on_commit(model, head)
    if on_head:
        return on_head[0].version
    latest = state.newest_ever(model)
    if latest is None:
        return FIRST
    messages = ctx.git.subjects(f"{latest.tag}..HEAD")
    return latest.version.bump(bump_from_commits(messages))


def resolve_baseline(ctx: Context, model: str, opts: RunOptions) -> Baseline | None:
    reg = Registry(ctx.git)
    if opts.baseline == "none":
        return None
    files = ctx.cfg.config.models[model]
    if opts.baseline:
        info = reg.read(model).find(model, opts.baseline)
        tag, sha, version = info.tag, info.sha, str(info.version)
        if reg.record(tag) is None and tag in reg.skipped:  # read, then known unreadable
            raise BaselineError(
                f"--baseline {opts.baseline}: the record in tag {tag} cannot be read, so it "
                "cannot be compared with",
                hint="name another version, or leave out --baseline",
            )
    else:

        def unrecorded(tag: str, sha: str) -> str | None:
            snap = snapshot.from_files(ctx, files, sha, tag)
            return None if snap.metrics else f"has no record and no metrics at {sha[:12]}"

        base_ref = opts.base_ref or baseline_mod.pr_base_ref(ctx.env)
        found = baseline_mod.resolve(
            ctx.git,
            model,
            base_ref=base_ref,
            on_skip=lambda why: ctx.rt.warning(f"{model}: {why}"),
            unrecorded=unrecorded,
        )
        if found is None:
            return None
        tag, sha, version = found.tag, found.sha, str(found.version)
    rec = reg.record(tag)
    if rec is None:  # a GTO version: compare with the files committed at it
        snap = snapshot.from_files(ctx, files, sha, tag)
        gone = f"; not there: {', '.join(snap.missing)}" if snap.missing else ""
        ctx.rt.notice(f"{tag} carries no evidence record; compared with {snap.source}{gone}")
        if not snap.metrics:
            ctx.rt.warning(f"{tag}: no metrics found at {sha[:12]}; metrics cannot be compared")
        return Baseline(version=version, tag=tag, sha=sha, metrics=snap.metrics, params=snap.params)
    return Baseline(
        version=version,
        tag=tag,
        sha=sha,
        metrics=rec.metrics,
        params=rec.params,
        lineage=rec.lineage,
        environment=rec.environment,
    )


def _command_env(ctx: Context, model: str, cfg: ModelConfig, workdir: Path) -> dict[str, str]:
    return {
        **ctx.env,
        **cfg.env,
        "LEPTON_MODEL": model,
        "LEPTON_MODEL_DIR": str(workdir),
    }


def _untracked_inputs(ctx: Context, workdir: Path, lin: Lineage) -> list[str]:
    """Inputs the run hashed that a commit would not carry (paths relative to lepton.yaml)."""
    inputs = {(workdir / p).resolve() for p in (*lin.code, *lin.data, *lin.params_files)}
    found = inputs & ctx.git.untracked(workdir)
    root = ctx.cfg.root.resolve()
    return sorted(p.relative_to(root).as_posix() for p in found)


def _git_info(
    ctx: Context, base_ref: str | None, untracked: list[str], products: list[Path]
) -> GitInfo:
    info = ctx.git.commit_info()
    branch, dirty = ctx.git.branch_and_dirty(ignore=products)
    pr_head = pr_head_sha(load_event(ctx.env))
    if pr_head is not None and pr_head != info["sha"]:
        # Only GitHub's merge commit of the PR head speaks for that head; another checkout
        # (pull_request_target's base, a ref of the workflow's own) built something else.
        # The raw commit names its parents even in a shallow clone, where HEAD^2 is unknown.
        raw = ctx.git.out("cat-file", "commit", info["sha"]).partition("\n\n")[0]
        if f"parent {pr_head}" not in raw.splitlines():
            pr_head = None
    return GitInfo(
        sha=info["sha"],
        branch=ctx.env.get("GITHUB_HEAD_REF") or branch,
        dirty=bool(untracked) or dirty,
        untracked=untracked,
        commit_time=int(info["time"]),
        author=info["author"],
        subject=info["subject"],
        base_ref=base_ref,
        pr_head=pr_head if pr_head != info["sha"] else None,
    )


def run_model(ctx: Context, name: str, opts: RunOptions) -> Record:
    with worktree_lock(ctx.paths.run_lock(name), name):
        return _run_model(ctx, name, opts)


def _run_model(ctx: Context, name: str, opts: RunOptions) -> Record:
    cfg = ctx.cfg.config.models[name]
    workdir = ctx.cfg.model_dir(cfg)
    rt = ctx.rt
    stat = StatCache(ctx.cfg.cache_dir() / "stat.json")
    cache = runcache.RunCache(ctx.cfg.cache_dir())

    params_files = [workdir / p for p in cfg.params]
    params = read_params(params_files)
    existing_outputs = set(lineage.expand(workdir, cfg.outputs, what="outputs", required=False))
    lin = lineage.collect(
        workdir,
        code=cfg.code,
        data=cfg.data,
        params=params_files,
        outputs=existing_outputs,
        cache=stat,
    )
    env = _environment(ctx, name, cfg, workdir, opts)
    inputs = runcache.inputs_key(name, cfg, lin, params)
    key = runcache.key(inputs, env)
    base_ref = opts.base_ref or baseline_mod.pr_base_ref(ctx.env)
    base = resolve_baseline(ctx, name, opts)
    untracked = _untracked_inputs(ctx, workdir, lin)
    if untracked:
        rt.warning(
            f"{name}: inputs not tracked by git: {some(untracked)}; the record is marked dirty and "
            "cannot be registered until they are committed or ignored"
        )
    sources = [workdir / p for p in (*lin.code, *lin.data, *lin.params_files)]
    git_info = _git_info(ctx, base_ref, untracked, products(ctx.cfg, existing_outputs, sources))

    hit, reason = None, "--no-cache was given"
    if opts.use_cache and ctx.cfg.config.cache.enabled:
        hit, reason = _lookup(ctx, name, key, workdir, cache, stat)
        if hit is None and opts.cached_only:
            hit, reason = _lookup_trained(ctx, name, inputs, workdir, cache, stat, reason)
    if hit is not None:
        rt.notice(f"{name}: run-cache hit, training skipped: {reason}")
        if hit.record.cache.key != key:  # trained in another job's environment: that one's
            env, key = hit.record.environment, hit.record.cache.key
        steps = [s.model_copy(update={"skipped": True}) for s in hit.record.steps]
        metrics, outputs = hit.record.metrics, hit.record.outputs
        cache_info = CacheInfo(key=key, hit=True, source=hit.source, reason=reason)
    elif opts.cached_only:
        raise RunCacheMiss(
            f"{name}: run-cache miss ({reason}), and --cached-only forbids training here",
            hint="run `lepton-ci run` where the token cannot write first and restore its "
            "run-cache (model-main.yml: the `run` job saves it, `release` restores it)",
        )
    elif name in opts.adopt:
        rt.notice(f"{name}: run-cache miss: {reason}; recorded the training `init` just ran")
        steps = opts.adopt[name]
        produced = lineage.expand(workdir, cfg.outputs, what="outputs", required=True)
        outputs = lineage.entries(workdir, produced, stat)
        metrics = read_metrics([workdir / m for m in cfg.metrics])
        cache_info = CacheInfo(key=key, hit=False, reason=reason)
    else:
        rt.notice(f"{name}: run-cache miss: {reason}")
        for p in cache.detach(sorted(existing_outputs), stat):
            rt.notice(
                f"{name}: {p.relative_to(workdir)} is shared with the run-cache; removed "
                "it so training writes a new file"
            )
        steps = _run_steps(ctx, name, cfg, workdir)
        ctx.git.memo.pop(("head",), None)  # the commands may have moved HEAD: ask again
        produced = lineage.expand(workdir, cfg.outputs, what="outputs", required=True)
        outputs = lineage.entries(workdir, produced, stat)
        metrics = read_metrics([workdir / m for m in cfg.metrics])
        cache_info = CacheInfo(key=key, hit=False, reason=reason)
    stat.save()

    results = gates.evaluate(metrics, base.metrics if base else None, cfg.gates)
    record = Record(
        model=name,
        candidate_version=str(candidate_version(ctx, name)),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        git=git_info,
        params=params,
        metrics=metrics,
        lineage=lin,
        outputs=outputs,
        environment=env,
        steps=steps,
        cache=cache_info,
        baseline=base,
        gates=results,
        verdict="fail" if gates.verdict(results) == "fail" else "pass",
        run_url=ctx.run_url(),
    )
    save(record, ctx.record_path(name))
    if not cache_info.hit:
        how = cache.store(record, workdir, inputs)
        if how:
            rt.notice(
                f"{name}: run-cache stored {len(how)} artifact(s) by {', '.join(sorted(set(how)))}"
                f"; the cache holds {cache.usage().text()}"
            )
    return record


def _environment(
    ctx: Context, name: str, cfg: ModelConfig, workdir: Path, opts: RunOptions
) -> Environment:
    """The environment the commands run in. A job that never trains (`--cached-only`) need
    not have it: the run it reuses brings the environment it trained in."""
    commands = {s: c for s in ("train", "evaluate") if (c := getattr(cfg, s)) is not None}
    try:
        return lineage.environment(
            ctx.cfg.root,
            ctx.cfg.config.environment,
            commands,
            cwd=workdir,
            env=_command_env(ctx, name, cfg, workdir),
            cache_dir=ctx.cfg.cache_dir(),
            warn=lambda text: ctx.rt.warning(f"{name}: {text}"),
        )
    except InputError as e:
        if not opts.cached_only:
            raise
        ctx.rt.notice(f"{name}: {e.message}; --cached-only reuses a run of the same inputs")
        return Environment(python="", platform="", packages_digest="", packages_source="unknown")


def _lookup_trained(
    ctx: Context,
    name: str,
    inputs: str,
    workdir: Path,
    cache: runcache.RunCache,
    stat: StatCache,
    why_not: str,
) -> tuple[runcache.Hit | None, str]:
    """For `--cached-only`: the run of the same inputs that the read-only job stored, in
    the environment it trained in. This job's own environment (often without the training
    dependencies: it never trains) is not the training's, so it is not compared."""
    try:
        rec = cache.lookup_trained(name, inputs)
    except RecordError as e:
        ctx.rt.warning(f"{e.message}; ignored")
        rec = None
    if rec is None:
        return None, why_not
    restored, missing = cache.restore(rec, workdir, stat)
    if missing is not None:
        return None, f"a run of the same inputs is stored but {missing}"
    extra = f"; restored {', '.join(restored)} from the cache" if restored else ""
    return (
        runcache.Hit(rec, "local cache", restored),
        f"same code, data, params and commands as the run of {rec.git.sha[:8]} (local cache), "
        f"trained with Python {rec.environment.python} and its packages; this job's own "
        f"environment is not compared, as --cached-only never trains{extra}",
    )


def _lookup(
    ctx: Context, name: str, key: str, workdir: Path, cache: runcache.RunCache, stat: StatCache
) -> tuple[runcache.Hit | None, str]:
    sources: list[tuple[str, Record]] = []
    try:
        local = cache.lookup_local(name, key)
    except RecordError as e:  # the cache is only a shortcut: a broken entry is a miss
        ctx.rt.warning(f"{e.message}; ignored, and this run's result replaces it")
        local = None
    if local is not None:
        sources.append(("local cache", local))
    else:
        registry = Registry(ctx.git)
        # The key is a trailer of each version tag: only matching tags' records are parsed.
        tagged = registry.read(name).tags_with_cache_key(name, key)
        for tag, rec in registry.records(tagged).items():
            if rec.cache.key == key:
                sources.append((f"tag {tag}", rec))
    if not sources:
        return None, f"no earlier run with the same inputs (key {key.split(':')[-1][:12]})"
    why = ""
    for source, rec in sources:
        restored, why_not = cache.restore(rec, workdir, stat)
        if why_not is None:
            extra = f"; restored {', '.join(restored)} from the cache" if restored else ""
            return (
                runcache.Hit(rec, source, restored),
                f"same code, data, params, commands and environment as the run of "
                f"{rec.git.sha[:8]} ({source}){extra}",
            )
        why = f"an earlier run matches ({source}) but {why_not}"
    return None, why


def _run_steps(ctx: Context, name: str, cfg: ModelConfig, workdir: Path) -> list[Step]:
    steps = []
    env = _command_env(ctx, name, cfg, workdir)
    for step_name in ("train", "evaluate"):
        command = getattr(cfg, step_name)
        if command is None:
            continue
        with ctx.rt.group(f"{name}: {step_name}"):
            res = run_command(
                step_name,
                command,
                cwd=workdir,
                env=env,
                timeout_s=cfg.timeout_minutes * 60,
            )
        steps.append(
            Step(
                name=step_name,
                command=command,
                exit_code=res.exit_code,
                started_at=res.started_at,
                duration_s=res.duration_s,
            )
        )
        if res.exit_code != 0:
            tail = "\n".join(f"    {line}" for line in res.tail[-10:]) or "    (no output)"
            raise CommandFailed(
                f"{name}: {step_name} command {res.status()}; last lines:\n{tail}",
                hint=f"fix the {step_name} command or run it by hand in {workdir}",
            )
    return steps


# A job whose `env:` says this runs no untrusted code: it restores only the caches other such
# jobs saved (actions/setup/bootstrap.py keys them `trusted`). Training runs the repository's
# code, which could write into what that job saves, so it may only reuse a run.
TRUSTED_JOB = "LEPTON_TRUSTED_JOB"


def run(ctx: Context, models: list[str], opts: RunOptions) -> list[Record]:
    if ctx.env.get(TRUSTED_JOB) == "true" and not (opts.cached_only and opts.use_cache):
        raise UntrustedCode(
            f"this job says it runs no untrusted code ({TRUSTED_JOB}: true), and `run` "
            "without --cached-only may train, running the repository's code where the job's "
            "token can write and its caches are the trusted side's",
            hint="pass `cached-only: true` (restoring the run-cache of the job that trained), "
            f"or train in a job without {TRUSTED_JOB}",
        )
    return [run_model(ctx, m, opts) for m in models]


def raise_on_failure(records: list[Record]) -> None:
    """Each failing gate was already reported with its reasons; this names them once."""
    failed = [f"{r.model}.{g.metric}" for r in records for g in r.gates if g.verdict == "fail"]
    if failed:
        raise GateFailed(
            f"quality gate failed: {', '.join(failed)}",
            hint="improve the model, or change the gate in lepton.yaml if it is wrong",
        )


def regate(
    ctx: Context,
    model: str | None,
    *,
    record_path: Path | None = None,
    baseline: str | None = None,
) -> Record:
    """The last run's record (or `record_path`), compared again with another baseline if asked."""
    name, cfg = ctx.cfg.model(model)
    rec = record_mod.load(record_path or ctx.record_path(name))
    if not baseline:
        return rec
    base = resolve_baseline(ctx, name, RunOptions(baseline=baseline))
    results = gates.evaluate(rec.metrics, base.metrics if base else None, cfg.gates)
    return rec.model_copy(
        update={"baseline": base, "gates": results, "verdict": gates.verdict(results)}
    )

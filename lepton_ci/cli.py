"""The `lepton-ci` command line: a thin layer over importable operations.

Heavy modules (pydantic models, docker, kubernetes) are imported inside the commands that need
them, so `lepton-ci --version` and `--help` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_ci import __version__

if TYPE_CHECKING:
    from lepton_ci.core.context import Context

REPORT_URL = "https://github.com/lepton-ci/lepton-ci/issues"
FORMATS = ("table", "markdown", "json")


def _ctx(args: argparse.Namespace) -> Context:
    from lepton_ci.core.context import Context

    return Context.load(args.config, Path(args.directory) if args.directory else None)


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# -- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from lepton_ci.run import diffview
    from lepton_ci.run import operation as runs

    ctx = _ctx(args)
    models = args.model or list(ctx.cfg.config.models)
    for m in models:
        ctx.cfg.model(m)
    opts = runs.RunOptions(
        use_cache=not args.no_cache,
        baseline=args.baseline,
        base_ref=args.base_ref,
    )
    from lepton_ci.report import comment as report
    from lepton_ci.report import publish
    from lepton_ci.versions.registry import Registry

    records = runs.run(ctx, models, opts)
    bundles = {}
    for rec in records:
        meta = publish.meta_from_env(ctx.env, rec, Registry(ctx.git))
        bundles[rec.model] = report.write_bundle(
            publish.bundle_dir(ctx.cfg.root, rec.model), rec, meta
        )
        _print(diffview.render(rec, args.format))
        ctx.rt.summary(diffview.as_markdown(rec))
        for g in rec.gates:
            if g.verdict == "fail":
                ctx.rt.error(f"{g.metric}: {'; '.join(g.reasons)}", title=f"{rec.model} gate")
    if len(records) == 1:
        rec = records[0]
        ctx.rt.set_outputs(
            {
                "verdict": rec.verdict,
                "record": str(ctx.record_path(rec.model)),
                "cache-hit": str(rec.cache.hit).lower(),
                "version": rec.candidate_version or "",
                "baseline": rec.baseline.tag if rec.baseline else "",
                "report": str(bundles[rec.model]),
            }
        )
    else:
        ctx.rt.set_output(
            "verdict", "fail" if any(r.verdict == "fail" for r in records) else "pass"
        )
        ctx.rt.set_output("report", str(ctx.cfg.root / ".lepton" / "report"))
    if not args.no_fail:
        runs.raise_on_failure(records)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from lepton_ci.core import record as record_mod
    from lepton_ci.run import diffview, gates
    from lepton_ci.run.operation import RunOptions, resolve_baseline

    ctx = _ctx(args)
    name, cfg = ctx.cfg.model(args.model)
    rec = record_mod.load(Path(args.record) if args.record else ctx.record_path(name))
    if args.baseline:
        base = resolve_baseline(ctx, name, RunOptions(baseline=args.baseline))
        results = gates.evaluate(rec.metrics, base.metrics if base else None, cfg.gates)
        rec = rec.model_copy(
            update={"baseline": base, "gates": results, "verdict": gates.verdict(results)}
        )
    _print(diffview.render(rec, "json" if args.json else args.format))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from lepton_ci.versions import operations as versioning

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    res = versioning.register(
        ctx, name, version=args.version, bump=args.bump, push=args.push, remote=args.remote
    )
    ctx.rt.set_outputs({"version": str(res.version), "tag": res.tag, "sha": res.sha})
    if args.json:
        _print(
            json.dumps(
                {
                    "model": name,
                    "version": str(res.version),
                    "tag": res.tag,
                    "sha": res.sha,
                    "pushed": res.pushed,
                }
            )
        )
    else:
        _print(
            f"registered {res.tag} at {res.sha[:12]} ({res.record.verdict})"
            + (f", pushed to {args.remote}" if res.pushed else "")
        )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from lepton_ci.versions import operations as versioning

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    res = versioning.promote(
        ctx, name, args.version, args.stage, push=args.push, remote=args.remote, actor=args.actor
    )
    ctx.rt.set_outputs({"tag": res.tag, "version": str(res.version), "sha": res.sha})
    if args.json:
        _print(
            json.dumps(
                {
                    "model": name,
                    "version": str(res.version),
                    "stage": res.stage,
                    "tag": res.tag,
                    "sha": res.sha,
                    "pushed": res.pushed,
                }
            )
        )
    else:
        _print(f"promoted {name}@{res.version} to {res.stage} ({res.tag})")
    return 0


def _registry_state(args: argparse.Namespace) -> Any:
    from lepton_ci.core.git import Git
    from lepton_ci.versions.registry import Registry

    return Registry(Git(Path(args.directory or "."))).read(getattr(args, "model", None))


def _when(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _is_environment(args: argparse.Namespace) -> bool:
    """`history NAME`: a deploy environment's releases, or else a model's registry events."""
    from lepton_ci.core.errors import ConfigError

    try:
        ctx = _ctx(args)
    except ConfigError:
        return False
    cfg = ctx.cfg.config
    return args.model not in cfg.models and any(
        m.deploy and args.model in m.deploy.environments for m in cfg.models.values()
    )


def cmd_accept_tag(args: argparse.Namespace) -> int:
    from lepton_ci.versions import operations as versioning

    ctx = _ctx(args)
    tag = args.tag or ctx.env.get("GITHUB_REF_NAME", "")
    res = versioning.accept_pushed_tag(ctx, tag, remote=args.remote, actor=args.actor)
    if res is None:
        ctx.rt.set_outputs({"stage": "", "version": "", "model": ""})
        _print(f"{tag}: not a stage assignment; nothing to promote")
        return 0
    ctx.rt.set_outputs({"stage": res.stage, "version": str(res.version), "model": res.model})
    _print(f"{tag}: {res.model}@{res.version} accepted in {res.stage}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    state = _registry_state(args)
    rows = []
    for model in [args.model] if args.model else state.models():
        for v in state.versions(model, include_deregistered=args.all):
            rows.append(
                {
                    "model": model,
                    "version": str(v.version),
                    "tag": v.tag,
                    "sha": v.sha,
                    "stages": sorted(v.stages),
                    "verdict": v.verdict,
                    "author": v.who,
                    "created_at": v.time,
                    "deregistered": v.deregistered,
                }
            )
    if args.json:
        _print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        _print("no versions registered" + (f" for {args.model}" if args.model else ""))
        return 0
    header = ("model", "version", "stages", "gates", "created", "by", "commit")
    table = [header] + [
        (
            r["model"],
            r["version"] + (" (deregistered)" if r["deregistered"] else ""),
            ",".join(r["stages"]) or "-",
            r["verdict"] or "-",
            _when(r["created_at"]),
            r["author"],
            r["sha"][:10],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    _print(
        "\n".join(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table
        )
    )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    if args.model and _is_environment(args):
        args.env, args.model = args.model, None
        return _deploy_history(args)
    state = _registry_state(args)
    events = state.history(args.model)
    if args.json:
        _print(
            json.dumps(
                [
                    {
                        "tag": e.tag,
                        "model": e.model,
                        "action": e.action.value,
                        "version": e.version,
                        "stage": e.stage,
                        "sha": e.sha,
                        "who": e.who,
                        "time": e.time,
                    }
                    for e in events
                ],
                indent=2,
            )
        )
        return 0
    by_sha = {
        m: {v.sha: str(v.version) for v in state.versions(m, include_deregistered=True)}
        for m in state.models()
    }
    for e in events:
        what = e.version or by_sha.get(e.model, {}).get(e.sha, e.sha[:10])
        where = f" -> {e.stage}" if e.stage else ""
        _print(
            f"{_when(e.time)}  {e.who:<20} {e.action.value:<10} {e.model} {what}{where}  [{e.tag}]"
        )
    if not events:
        _print("no registry events")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lepton_ci.core.errors import RegistryError
    from lepton_ci.core.git import Git
    from lepton_ci.run import diffview
    from lepton_ci.versions.registry import Registry

    model, _, version = args.ref.partition("@")
    reg = Registry(Git(Path(args.directory or ".")))
    state = reg.read(model)
    info = state.find(model, version) if version else state.latest(model)
    if info is None:
        raise RegistryError(
            f"{model} has no registered version", hint="register one with `lepton-ci register`"
        )
    rec = reg.record(info.tag)
    if args.json:
        _print(rec.to_json() if rec else json.dumps({"tag": info.tag, "sha": info.sha}))
        return 0
    stages = (
        ",".join(sorted(s for s, v in state.stages(model).items() if v.version == info.version))
        or "-"
    )
    _print(
        f"{info.tag}  commit {info.sha[:12]}  by {info.who}  {_when(info.time)}  stages: {stages}"
    )
    if rec is None:
        _print("(no evidence record in this tag)")
        return 0
    _print(diffview.as_table(rec))
    _print(f"inputs: code {rec.lineage.code_digest[:20]}…  data {rec.lineage.data_digest[:20]}…")
    for path, entry in rec.outputs.items():
        _print(f"artifact: {path} {entry.hash[:20]}… ({entry.size} bytes)")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from lepton_ci.report import card

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    rec = ctx.record(name, args.version or None)
    result = card.write(ctx, rec, Path(args.out) if args.out else None)
    ctx.rt.set_outputs({"card": str(result.path)})
    if args.print:
        _print(result.text)
    else:
        _print(f"wrote {result.path}")
    return 0


def cmd_comment(args: argparse.Namespace) -> int:
    import os

    from lepton_ci.core import record as record_mod
    from lepton_ci.core.gha import Runtime
    from lepton_ci.report import comment as report
    from lepton_ci.report import publish
    from lepton_ci.versions.registry import Registry

    env = dict(os.environ)
    rt = Runtime(env)
    if args.from_:
        bundle = Path(args.from_)
        rec, meta = report.read_bundle(bundle)
        local_dir = bundle
    else:
        ctx = _ctx(args)
        name, _ = ctx.cfg.model(args.model)
        rec = record_mod.load(ctx.record_path(name))
        meta = publish.meta_from_env(ctx.env, rec, Registry(ctx.git))
        local_dir = publish.bundle_dir(ctx.cfg.root, name)
    if args.workflow:
        meta = meta.model_copy(update={"workflow": args.workflow})
    posted = publish.comment(
        env,
        rt,
        rec,
        meta,
        pr=args.pr,
        repo=args.repo,
        local_dir=local_dir,
        from_bundle=bool(args.from_),
    )
    rt.summary(posted.rendered.body)
    if posted.outcome is None:
        _print(posted.rendered.body)
        return 0
    o = posted.outcome
    rt.set_outputs(
        {"comment-id": str(o.comment_id or ""), "comment-url": o.url or "", "action": o.action}
    )
    _print(f"PR comment {o.action} ({o.calls} API calls)" + (f": {o.url}" if o.url else ""))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from lepton_ci.image import operations as imageops

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    res = imageops.build(ctx, name, version=args.version, builder=args.builder)
    ctx.rt.set_outputs(
        {
            "digest": res.digest,
            "image": res.image,
            "ref": res.ref,
            "tags": ",".join(res.tags),
            "uploaded-bytes": str(res.uploaded_bytes),
        },
        required=("digest",),
    )
    if args.json:
        _print(
            json.dumps(
                {
                    "image": res.image,
                    "digest": res.digest,
                    "tags": res.tags,
                    "builder": res.builder,
                    "uploaded_bytes": res.uploaded_bytes,
                    "layers": res.layers,
                },
                indent=2,
            )
        )
    else:
        _print(
            f"pushed {res.ref} as {', '.join(res.tags)} ({res.builder} builder, "
            f"{res.uploaded_bytes / 1e6:.2f} MB uploaded)"
        )
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from lepton_ci.image import operations as imageops

    if args.image_command == "inspect":
        info = imageops.inspect(args.ref)
        if args.json:
            _print(
                json.dumps(
                    {
                        "ref": info.ref,
                        "digest": info.digest,
                        "labels": info.labels,
                        "size": info.size,
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            _print(imageops.summary(info))
        return 0
    digest = imageops.retag(args.ref, args.tags)
    _print(f"tagged {digest} as {', '.join(args.tags)}")
    return 0


def _release_args(args: argparse.Namespace) -> tuple[Any, str, Any]:
    from lepton_ci.deploy import operations as deployops

    ctx = _ctx(args)
    model = deployops.find_model_for_env(ctx, args.env, args.model)
    return ctx, model, deployops


def cmd_render(args: argparse.Namespace) -> int:
    ctx, model, deployops = _release_args(args)
    d = deployops.deployer(ctx, model, args.env)
    rel = deployops.release(
        ctx, model, version=args.version, image=args.image, revision=len(d.history()) + 1
    )
    _print(d.render(rel))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    ctx, model, deployops = _release_args(args)
    from lepton_ci.core.errors import LeptonError
    from lepton_ci.deploy.deployer import DeployFailed
    from lepton_ci.deploy.github_deployments import Recorder

    d = deployops.deployer(ctx, model, args.env)
    rel = deployops.release(ctx, model, version=args.version, image=args.image)
    github = None if args.dry_run else Recorder.from_env(ctx.env)
    if github is not None:
        github.start(args.env, rel)
    env_url = d.env.check_url()
    try:
        out = d.deploy(rel, dry_run=args.dry_run)
    except DeployFailed as e:
        r = e.outcome.reverted_to
        ctx.rt.set_outputs(
            {
                "status": "reverted",
                "revision": str(e.outcome.revision.number),
                "serving-revision": str(r.number if r else ""),
                "serving-version": r.version if r else "",
            }
        )
        ctx.rt.summary(
            f"**{args.env}: deploy of {rel.version} failed and was reverted**\n\n"
            + _probe_table(e.outcome.revision)
        )
        if github is not None:
            github.finish(
                False,
                f"{rel.version} failed; reverted to {r.version if r else 'nothing'}",
                rel.run_url,
                env_url,
            )
        raise
    except LeptonError as e:
        if github is not None:
            github.finish(False, e.message, rel.run_url, env_url)
        raise
    if args.dry_run:
        _print(out.revision.manifests)
        _print(
            f"dry run: would deploy {rel.version} ({rel.image}) to {args.env} as revision "
            f"{out.revision.number}"
        )
        return 0
    rev = out.revision
    if github is not None:
        github.finish(True, f"{rel.version} healthy (revision {rev.number})", rel.run_url, env_url)
    ctx.rt.set_outputs(
        {
            "status": rev.status,
            "revision": str(rev.number),
            "serving-revision": str(rev.number),
            "serving-version": rev.version,
        }
    )
    ctx.rt.summary(
        f"**{args.env}: {rel.version} deployed (revision {rev.number})**\n\n" + _probe_table(rev)
    )
    _print(
        f"{args.env}: revision {rev.number} deployed {rev.version} ({rev.reason}"
        + (f"; {'; '.join(out.notes)}" if out.notes else "")
        + ")"
    )
    return 0


def _probe_table(rev: Any) -> str:
    from lepton_ci.core.escape import md_cell

    rows = ["| check | ok | detail |", "|---|---|---|"]
    for p in rev.probes[-20:]:
        rows.append(f"| {md_cell(p.check)} | {'✅' if p.ok else '❌'} | {md_cell(p.detail)} |")
    return "\n".join(rows) + "\n"


def cmd_rollback(args: argparse.Namespace) -> int:
    ctx, model, deployops = _release_args(args)
    out = deployops.deployer(ctx, model, args.env).rollback(args.to)
    rev = out.revision
    ctx.rt.set_outputs(
        {"status": rev.status, "revision": str(rev.number), "serving-version": rev.version}
    )
    _print(f"{args.env}: revision {rev.number} ({rev.description}) serves {rev.version}")
    return 0


def _deploy_history(args: argparse.Namespace) -> int:
    ctx, model, deployops = _release_args(args)
    revs = deployops.deployer(ctx, model, args.env).history()
    if args.json:
        _print(
            json.dumps([r.model_dump(mode="json", exclude={"manifests"}) for r in revs], indent=2)
        )
        return 0
    for r in revs:
        _print(
            f"{r.number:>4}  {r.status:<11} {r.version:<10} {r.created_at}  {r.who:<12} "
            f"{r.description}" + (f"  ({r.reason})" if r.reason else "")
        )
    if not revs:
        _print(f"no revisions in {args.env}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    import os

    from lepton_ci.init import scaffold

    root = Path.cwd()
    answers = scaffold.Answers(model=args.model or scaffold.default_model(root))
    for field in ("train", "evaluate", "metrics"):
        if getattr(args, field):
            setattr(answers, field, getattr(args, field))
    interactive = sys.stdin.isatty() and not os.environ.get("CI") and not args.yes
    if interactive:
        answers = scaffold.ask(answers, input)
    written = scaffold.init(root, answers)
    for p in written:
        _print(f"wrote {p.relative_to(root)}")
    _print("next: edit lepton.yaml (params, data, gates), then `lepton-ci run`")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from lepton_ci.core.git import Git
    from lepton_ci.site import operations as site

    git = Git(Path.cwd())
    result = site.build(
        git,
        site.load_config(Path.cwd(), args.config),
        Path(args.out),
        model=args.model,
        base_url=args.base_url,
        repo=args.repo,
    )
    _print(
        f"wrote {result.out}: {result.models} models, {result.versions} versions, "
        f"{result.pages} pages, {result.bytes / 1e6:.2f} MB in {result.seconds:.2f} s"
        + (f"; published at {result.url}" if result.url else "")
    )
    return 0


def cmd_gha(args: argparse.Namespace) -> int:
    import os

    from lepton_ci.gha_entry import argv

    return main(argv(args.step, os.environ))


def cmd_schema(args: argparse.Namespace) -> int:
    from lepton_ci.core import record

    _print(json.dumps(record.schema(), indent=2, sort_keys=True))
    return 0


# -- parser --------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lepton-ci",
        description="Version, gate and ship ML models from git, in CI, with evidence.",
    )
    p.add_argument("--version", action="version", version=f"lepton-ci {__version__}")
    p.add_argument("--config", help="path to lepton.yaml (default: found from the directory up)")
    p.add_argument("-C", dest="directory", metavar="DIR", help="run as if started in DIR")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("run", cmd_run, "train and evaluate, record the evidence, compare and gate")
    sp.add_argument("--model", action="append", help="model to run (repeatable; default: all)")
    sp.add_argument("--no-cache", action="store_true", help="train even on a run-cache hit")
    sp.add_argument("--baseline", help="version to compare with (default: resolved; `none`)")
    sp.add_argument("--base-ref", help="compare as a pull request into this branch")
    sp.add_argument("--format", choices=FORMATS, default="table")
    sp.add_argument("--no-fail", action="store_true", help="exit 0 even when a gate fails")

    sp = add("diff", cmd_diff, "show the metrics and params diff of the last run vs its baseline")
    sp.add_argument("--model")
    sp.add_argument("--record", help="record file (default: the model's last run)")
    sp.add_argument("--baseline", help="compare with this version instead")
    sp.add_argument("--format", choices=FORMATS, default="table")
    sp.add_argument("--json", action="store_true", help="same as --format json")

    sp = add("register", cmd_register, "register the last run as a version tag <model>@vX.Y.Z")
    sp.add_argument("--model")
    g = sp.add_mutually_exclusive_group()
    g.add_argument(
        "--bump",
        choices=("major", "minor", "patch"),
        help="part to bump (default: from conventional commits, else patch)",
    )
    g.add_argument("--version", help="exact version, e.g. 1.2.3")
    sp.add_argument("--push", action="store_true", help="push the tag (removed again if refused)")
    sp.add_argument("--remote", default="origin")
    sp.add_argument("--json", action="store_true")

    sp = add("promote", cmd_promote, "assign a version to a stage with a tag <model>#<stage>#N")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("stage")
    sp.add_argument("--actor", help="GitHub login promoting (default: GITHUB_ACTOR)")
    sp.add_argument("--push", action="store_true")
    sp.add_argument("--remote", default="origin")
    sp.add_argument("--json", action="store_true")

    sp = add(
        "accept-tag",
        cmd_accept_tag,
        "check a pushed stage tag like a promotion; delete it again if refused",
    )
    sp.add_argument("tag", nargs="?", help="the tag (default: GITHUB_REF_NAME)")
    sp.add_argument("--actor", help="who pushed it (default: GITHUB_ACTOR)")
    sp.add_argument("--remote", default="origin")

    sp = add("versions", cmd_versions, "list registered versions with their stages and verdicts")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--all", action="store_true", help="include deregistered versions")
    sp.add_argument("--json", action="store_true")

    sp = add("show", cmd_show, "show one version (MODEL or MODEL@vX.Y.Z) and its evidence")
    sp.add_argument("ref")
    sp.add_argument("--json", action="store_true")

    sp = add(
        "history",
        cmd_history,
        "registry events of MODEL, or the release history of a deploy environment",
    )
    sp.add_argument("model", nargs="?", metavar="MODEL|ENV")
    sp.add_argument("--json", action="store_true")

    sp = add("card", cmd_card, "write the model card of the last run or of a registered version")
    sp.add_argument("--model")
    sp.add_argument("--version", help="a registered version (default: the last run)")
    sp.add_argument("--out", help="file to write (default: card.path in lepton.yaml)")
    sp.add_argument("--print", action="store_true", help="also print the card")

    sp = add("comment", cmd_comment, "keep one sticky metrics comment on the pull request")
    sp.add_argument("--model")
    sp.add_argument(
        "--from",
        dest="from_",
        metavar="BUNDLE",
        help="post a report bundle written by `run` (fork-safe workflow_run job)",
    )
    sp.add_argument("--pr", type=int, help="pull request number (default: from the event)")
    sp.add_argument("--repo", help="owner/name (default: GITHUB_REPOSITORY)")
    sp.add_argument("--workflow", help="name that keeps comments apart (default: GITHUB_WORKFLOW)")

    sp = add("build", cmd_build, "build and push the model image, tagged and labelled")
    sp.add_argument("--model")
    sp.add_argument("--version", help="a registered version (default: the last run)")
    sp.add_argument("--builder", choices=("layers", "dockerfile"))
    sp.add_argument("--json", action="store_true")

    sp = add("image", cmd_image, "inspect an image's labels, or re-tag an existing digest")
    isub = sp.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    ip = isub.add_parser("inspect", help="which model, version and metrics an image holds")
    ip.add_argument("ref")
    ip.add_argument("--json", action="store_true")
    ip = isub.add_parser("retag", help="point more tags at an existing image (never rebuilds)")
    ip.add_argument("ref")
    ip.add_argument("tags", nargs="+")

    for name, fn, help_ in (
        ("render", cmd_render, "print the Kubernetes manifests of a release without applying"),
        ("deploy", cmd_deploy, "deploy a release, check its health, revert by itself on failure"),
        ("rollback", cmd_rollback, "put an earlier healthy revision back (a new revision)"),
    ):
        sp = add(name, fn, help_)
        sp.add_argument("env", metavar="ENV")
        sp.add_argument("--model")
        if name == "rollback":
            sp.add_argument("--to", type=int, help="revision number (default: the previous)")
        else:
            sp.add_argument("--version", help="a registered version (default: the last run)")
            sp.add_argument("--image", help="REF@sha256:... (default: the version's image tag)")
        if name == "deploy":
            sp.add_argument("--dry-run", action="store_true", help="render and plan only")

    sp = add("init", cmd_init, "scaffold lepton.yaml and the workflows (never overwrites)")
    sp.add_argument("--model", help="model name (default: from the directory)")
    sp.add_argument("--train", help="train command")
    sp.add_argument("--evaluate", help="evaluate command")
    sp.add_argument("--metrics", help="metrics file the evaluate command writes")
    sp.add_argument("--yes", action="store_true", help="ask nothing, take the defaults")

    sp = add("site", cmd_site, "build the versions view: a static site from the registry tags")
    sp.add_argument("--out", default="_site", help="directory to write (default: _site)")
    sp.add_argument("--model", help="only this model (default: every model with tags)")
    sp.add_argument("--base-url", help="where the site is published (canonical links)")
    sp.add_argument("--repo", help="OWNER/NAME for commit and workflow links (GITHUB_REPOSITORY)")

    sp = add("gha", cmd_gha, "run a step from GitHub Actions inputs (LEPTON_INPUT_* variables)")
    sp.add_argument("step")

    sp = add("schema", cmd_schema, "print the JSON schema of the evidence record")
    sp.add_argument("which", choices=("record",))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from lepton_ci.core.errors import LeptonError
    from lepton_ci.core.gha import Runtime, debug_enabled

    debug = args.debug or debug_enabled()
    import os

    start_dir = Path.cwd()
    try:
        if args.directory:
            os.chdir(args.directory)  # like `git -C`: every relative path is from DIR
        return int(args.fn(args))
    except LeptonError as e:
        rt = Runtime(stream=sys.stderr)
        rt.error(str(e), title=f"lepton-ci {args.command}")
        rt.summary(f"**lepton-ci {args.command} failed**\n\n```\n{e}\n```")
        if debug:
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; stop quietly as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # the last line of defence: say what happened and how to report it
        rt = Runtime(stream=sys.stderr)
        rt.error(
            f"unexpected error: {type(e).__name__}: {e}. This is a bug in lepton-ci; please "
            f"report it at {REPORT_URL} with the output of `lepton-ci --debug {args.command}`."
        )
        if debug:
            traceback.print_exc()
        return 70
    finally:
        os.chdir(start_dir)

"""The `lepton-ci` command line, thin over importable operations; heavy imports stay inside."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lepton_ci import __version__
from lepton_ci.core.printer import echo, emit, to_json

if TYPE_CHECKING:
    from lepton_ci.core.context import Context
    from lepton_ci.core.git import Git
    from lepton_ci.deploy.operations import EnvironmentOperation
    from lepton_ci.run.operation import RunOptions

REPORT_URL = "https://github.com/lepton-ci/lepton-ci/issues"
SIGNING_KEY_HELP = "PEM private key to sign with (default: LEPTON_SIGNING_KEY, trust.signing_key)"
FORMATS = ("table", "markdown", "json")


def _ctx(args: argparse.Namespace) -> Context:
    from lepton_ci.core.context import Context

    return Context.load(args.config)


def _git() -> Git:
    from lepton_ci.core.git import Git

    return Git(Path.cwd())


def cmd_run(args: argparse.Namespace) -> int:
    from lepton_ci.run.operation import RunOptions

    ctx = _ctx(args)
    opts = RunOptions(not args.no_cache, args.baseline, args.base_ref, args.cached_only)
    return _run(ctx, args.model or list(ctx.cfg.config.models), opts, args.format, args.no_fail)


def _run(ctx: Context, models: list[str], opts: RunOptions, fmt: str, no_fail: bool) -> int:
    from lepton_ci.report import bundle
    from lepton_ci.run import diffview
    from lepton_ci.run.operation import raise_on_failure

    report = bundle.run_and_bundle(ctx, models, opts)
    for rec in report.records:
        echo(diffview.render(rec, fmt))
    report.announce(ctx.rt)
    if not no_fail:
        raise_on_failure(report.records)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from lepton_ci.run import diffview
    from lepton_ci.run.compare import compare
    from lepton_ci.run.operation import regate

    fmt = "json" if args.json else args.format
    if args.revs:  # A [B]: any two versions or revisions
        echo(compare(_ctx(args), args.model, args.revs).render(fmt, args.precision, args.all))
        return 0
    record = Path(args.record) if args.record else None
    rec = regate(_ctx(args), args.model, record_path=record, baseline=args.baseline)
    echo(diffview.render(rec, fmt))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from lepton_ci.versions import operations

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    kw = {k: getattr(args, k) for k in ("version", "bump", "push", "remote", "allow_failed")}
    res = operations.register(ctx, name, signing_key=args.signing_key, **kw)
    res.outputs().write(ctx.rt)
    emit(res, as_json=args.json, text=res.text(args.remote), indent=None)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from lepton_ci.deploy.history import reader
    from lepton_ci.versions import operations

    ctx = _ctx(args)
    name, _ = ctx.cfg.model(args.model)
    kw = {k: getattr(args, k) for k in ("push", "remote", "actor", "deployed_here")}
    res = operations.promote(ctx, name, args.version, args.stage, history=reader(ctx), **kw)
    res.outputs().write(ctx.rt)
    ctx.rt.summary(res.approval)
    emit(
        res,
        as_json=args.json,
        text=f"promoted {name}@{res.version} to {res.stage} ({res.tag})",
        indent=None,
    )
    return 0


def cmd_accept_tag(args: argparse.Namespace) -> int:
    from lepton_ci.deploy.history import reader
    from lepton_ci.versions import operations

    ctx = _ctx(args)
    tag = args.tag or ctx.env.get("GITHUB_REF_NAME", "")
    echo(
        operations.accept_tag_step(
            ctx, tag, remote=args.remote, actor=args.actor, history=reader(ctx)
        )
    )
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from lepton_ci.versions import queries

    emit(queries.versions(_git(), args.model, include_all=args.all), as_json=args.json)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from lepton_ci.core.config_glance import names_environment
    from lepton_ci.versions import queries

    if args.model and names_environment(args.config, args.model):
        records, text = _environment(args, env=args.model).history_view()
        emit(records, as_json=args.json, text=text)
        return 0
    table = queries.history(_git(), args.model)
    emit(table, as_json=args.json, text=queries.history_text(table))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lepton_ci.run import diffview
    from lepton_ci.versions import queries

    shown = queries.show(_git(), args.ref)
    json_text = shown.record.to_json() if shown.record else to_json(shown, indent=None)
    echo(json_text if args.json else diffview.version_text(shown))
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from lepton_ci.report import card

    out = Path(args.out) if args.out else None
    result = card.write_step(_ctx(args), args.model, args.version or None, out)
    if args.print or result.path == card.STDOUT:
        echo(result.text)
    elif result.stream:  # stdout may be where the card went: keep it the card's alone
        echo(f"wrote {result.path}", sys.stderr)
    else:
        echo(f"wrote {result.path}")
    return 0


def cmd_comment(args: argparse.Namespace) -> int:
    from lepton_ci.report import publish

    posted = publish.post(
        dict(os.environ),
        bundle=Path(args.from_) if args.from_ else None,
        ctx=None if args.from_ else _ctx(args),
        model=args.model,
        pr=args.pr,
        repo=args.repo,
        workflow=args.workflow,
        author=args.author,
    )
    echo(posted.text())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from lepton_ci.image import operations

    ctx = _ctx(args)
    name, cfg = ctx.cfg.model(args.model)
    if args.if_configured and cfg.image is None:
        # The all-in-one action builds on every push to main; a model without an image is
        # only versioned there, and that is no failure.
        ctx.rt.notice(
            f"{name}: lepton.yaml has no `image:` section, so nothing is built or deployed; "
            "add one to ship an image"
        )
        return 0
    res = operations.build(
        ctx, name, version=args.version, builder=args.builder, signing_key=args.signing_key
    )
    res.outputs().write(ctx.rt, required=("digest",))
    emit(res, as_json=args.json, text=res.text())
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from lepton_ci.fetch.operation import pull

    out = Path(args.out) if args.out else None
    res = pull(
        args.ref, out, ctx=_ctx(args), image=args.image, remote=args.remote, progress=sys.stderr
    )
    emit(res, as_json=args.json, text=res.text(), indent=None)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from lepton_ci.versions import trusted

    res = trusted.verify(_ctx(args), args.target, remote=args.remote)
    emit(res, as_json=args.json, text=res.text(), indent=None)
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from lepton_ci.trust import cluster

    echo(cluster.render(_ctx(args), args.model, name=args.name))
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from lepton_ci.image import operations

    if args.image_command == "retag":
        echo(f"tagged {operations.retag(args.ref, args.tags)} as {', '.join(args.tags)}")
    else:
        info = operations.inspect(args.ref)
        echo(to_json(info, sort_keys=True) if args.json else operations.summary(info))
    return 0


def _environment(args: argparse.Namespace, env: str | None = None) -> EnvironmentOperation:
    from lepton_ci.deploy.operations import EnvironmentOperation

    if env is not None:  # `history ENV`: the model comes from the environment
        return EnvironmentOperation(_ctx(args), env)
    return EnvironmentOperation(_ctx(args), args.env, args.model)


def cmd_render(args: argparse.Namespace) -> int:
    echo(_environment(args).render(args.version, args.image))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    op = _environment(args)
    if args.shadow:
        if args.dry_run:
            from lepton_ci.core.errors import LeptonError

            raise LeptonError("--shadow and --dry-run together: a shadow rollout is a real run")
        echo(op.shadow(args.version, args.image).text())
        return 0
    echo(op.deploy(args.version, args.image, dry_run=args.dry_run).text())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    echo(_environment(args).rollback(args.to, actor=args.actor).text())
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from lepton_ci.watch.operation import WatchRequest, watch

    req = WatchRequest(args.env, args.model, args.once, args.json, args.issue, args.judge_only)
    return watch(_ctx(args), req)


def cmd_init(args: argparse.Namespace) -> int:
    from lepton_ci.init import scaffold
    from lepton_ci.run.operation import RunOptions

    adopt = scaffold.command(
        Path.cwd(),
        model=args.model,
        overrides={k: v for k in ("train", "evaluate", "metrics") if (v := getattr(args, k))},
        interactive=sys.stdin.isatty() and not os.environ.get("CI") and not args.yes,
        yes=args.yes,
        no_run=args.no_run,
        env=dict(os.environ),
        log=echo,
    )
    if adopt is None:
        return 0
    from lepton_ci.core.context import Context

    # `run` records the training init has just done (once) rather than training again
    ctx = Context.load(str(Path.cwd() / "lepton.yaml"))
    return _run(ctx, list(ctx.cfg.config.models), RunOptions(adopt=adopt), "table", False)


def cmd_extras(args: argparse.Namespace) -> int:
    from lepton_ci.core import extras

    for name in extras.needed(_ctx(args).cfg, args.step, args.model, args.builder, os.environ):
        echo(name)
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from lepton_ci.site import operations as site

    cfg = site.load_config(Path.cwd(), args.config)
    out, git = Path(args.out), _git()
    echo(site.build(git, cfg, out, model=args.model, base_url=args.base_url, repo=args.repo).text())
    return 0


def cmd_gha(args: argparse.Namespace) -> int:
    from lepton_ci.gha_entry import KEY_FILE, argv

    step_argv = argv(args.step, os.environ)
    try:
        return main(step_argv)
    finally:  # a signing key written from the action's input lives only as long as the step
        for arg in step_argv:
            if arg.endswith(KEY_FILE):
                Path(arg).unlink(missing_ok=True)


def cmd_schema(args: argparse.Namespace) -> int:
    from lepton_ci.core import record

    echo(to_json(record.schema(), sort_keys=True))
    return 0


# -- parser --------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace], int]
COMMON: dict[str, tuple[str, dict[str, object]]] = {
    "model": ("--model", {}),
    "json": ("--json", {"action": "store_true"}),
    "remote": ("--remote", {"default": "origin"}),
    "version": ("--version", {"help": "a registered version (default: the last run)"}),
}


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

    def add(name: str, fn: Handler, help_: str, *common: str) -> argparse.ArgumentParser:
        """A command, with the options several commands share (COMMON) named in `common`."""
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        for option in common:
            flag, kwargs = COMMON[option]
            sp.add_argument(flag, **kwargs)  # type: ignore[arg-type]
        return sp

    sp = add("run", cmd_run, "train and evaluate, record the evidence, compare and gate")
    sp.add_argument("--model", action="append", help="model to run (repeatable; default: all)")
    sp.add_argument("--no-cache", action="store_true", help="train even on a run-cache hit")
    sp.add_argument("--cached-only", action="store_true", help="never train: a miss is an error")
    sp.add_argument("--baseline", help="version to compare with (default: resolved; `none`)")
    sp.add_argument("--base-ref", help="compare as a pull request into this branch")
    sp.add_argument("--format", choices=FORMATS, default="table")
    sp.add_argument("--no-fail", action="store_true", help="exit 0 even when a gate fails")

    sp = add("diff", cmd_diff, "metrics and params diff: last run vs baseline, or A vs B", "model")
    sp.add_argument("revs", nargs="*", metavar="A [B]", help="versions or revisions (B: work tree)")
    sp.add_argument("--precision", type=int, default=5, help="decimals (A B; default 5)")
    sp.add_argument("--all", action="store_true", help="show unchanged rows too (A B)")
    sp.add_argument("--record", help="record file (default: the model's last run)")
    sp.add_argument("--baseline", help="compare with this version instead")
    sp.add_argument("--format", choices=FORMATS, default="table")
    sp.add_argument("--json", action="store_true", help="same as --format json")

    sp = add("register", cmd_register, "tag the last run as a version", "model", "remote", "json")
    g = sp.add_mutually_exclusive_group()
    bumps = ("major", "minor", "patch")
    g.add_argument("--bump", choices=bumps, help="default: from conventional commits, else patch")
    g.add_argument("--version", help="exact version, e.g. 1.2.3")
    sp.add_argument("--push", action="store_true", help="push the tag (removed again if refused)")
    sp.add_argument("--allow-failed", action="store_true", help="register a failed run (logged)")
    sp.add_argument("--signing-key", metavar="PEM", help=SIGNING_KEY_HELP)

    sp = add("promote", cmd_promote, "assign a version to a stage", "remote", "json")
    sp.add_argument("model")
    sp.add_argument("version")
    sp.add_argument("stage")
    sp.add_argument(
        "--actor",
        help="GitHub login promoting (default: GITHUB_ACTOR; on a re-run GITHUB_TRIGGERING_ACTOR "
        "must be allowed too)",
    )
    sp.add_argument("--push", action="store_true")
    sp.add_argument("--deployed-here", action="store_true", help="the tag workflow must not deploy")

    sp = add("accept-tag", cmd_accept_tag, "check a pushed stage tag like a promotion", "remote")
    sp.add_argument("tag", nargs="?", help="the tag (default: GITHUB_REF_NAME)")
    sp.add_argument(
        "--actor",
        help="who pushed it (default: the push event's sender; on a re-run "
        "GITHUB_TRIGGERING_ACTOR must be allowed too)",
    )

    sp = add("versions", cmd_versions, "registered versions, their stages and verdicts", "json")
    sp.add_argument("model", nargs="?")
    sp.add_argument("--all", action="store_true", help="also deregistered, deprecated")

    sp = add("show", cmd_show, "one version (MODEL[@vX.Y.Z|@latest|#STAGE]), its evidence", "json")
    sp.add_argument("ref")

    sp = add("history", cmd_history, "registry events of MODEL, or releases of ENV", "json")
    sp.add_argument("model", nargs="?", metavar="MODEL|ENV")

    sp = add("card", cmd_card, "write the model card", "model", "version")
    sp.add_argument(
        "--out",
        help="file to write, its folder existing; `-` or a device (/dev/stdout) is written "
        "through, a link to its target (default: card.path in lepton.yaml)",
    )
    sp.add_argument("--print", action="store_true", help="also print the card")

    sp = add("comment", cmd_comment, "keep one sticky PR comment", "model")
    sp.add_argument("--from", dest="from_", metavar="BUNDLE", help="post a bundle `run` wrote")
    sp.add_argument("--pr", type=int, help="pull request number (default: from the event)")
    sp.add_argument("--repo", help="owner/name (default: GITHUB_REPOSITORY)")
    sp.add_argument("--workflow", help="name that keeps comments apart (default: GITHUB_WORKFLOW)")
    sp.add_argument(
        "--author",
        help="login the token posts as, for a GitHub App token: APP-SLUG[bot] (default: the "
        "token's own login, or github-actions[bot] for an installation token)",
    )

    sp = add("build", cmd_build, "build and push the model image", "model", "version", "json")
    sp.add_argument("--builder", choices=("layers", "dockerfile"))
    sp.add_argument(
        "--if-configured",
        action="store_true",
        help="with no `image:` section for the model, say so and exit 0 instead of failing",
    )
    sp.add_argument("--signing-key", metavar="PEM", help=SIGNING_KEY_HELP)

    sp = add(
        "pull",
        cmd_pull,
        "fetch a version's model files from its image, checked against its record",
        "remote",
        "json",
    )
    sp.add_argument("ref", metavar="MODEL[@vX.Y.Z|@latest|#STAGE]")
    sp.add_argument(
        "--out",
        metavar="DIR",
        help="folder to write the files and record.json to (default: "
        "~/.cache/lepton-ci/models/MODEL/VERSION)",
    )
    sp.add_argument(
        "--image",
        metavar="REF",
        help="the image (default: lepton.yaml's image.name at the "
        "version's tag); REGISTRY/REPO, :TAG or @sha256:... as given",
    )

    sp = add(
        "verify",
        cmd_verify,
        "check a version's or image's signature, signer and subjects against `trust:`",
        "remote",
        "json",
    )
    sp.add_argument("target", metavar="MODEL@vX.Y.Z|REGISTRY/REPO@sha256:...")

    sp = add("trust", cmd_trust, "the trust policy as a cluster-side admission rule")
    tsub = sp.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    tp = tsub.add_parser(
        "cluster-policy",
        help="a Kyverno ClusterPolicy that admits only images signed as `trust:` says",
    )
    tp.add_argument("--model", help="only this model's image (default: every model's)")
    tp.add_argument("--name", help="the policy's name (default: lepton-ci-trust)")

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
        ("watch", cmd_watch, "judge what serves by its SLOs in Prometheus; revert on a breach"),
    ):
        sp = add(name, fn, help_, "model")
        sp.add_argument("env", metavar="ENV")
        if name == "watch":
            sp.add_argument("--once", action="store_true", help="evaluate once; a breach acts")
            sp.add_argument("--json", action="store_true", help="each evaluation as a JSON line")
            sp.add_argument("--issue", action="store_true", help="keep one GitHub issue per env")
            sp.add_argument(
                "--judge-only",
                action="store_true",
                help="with --once: on a breach act on nothing (output act=true) and exit 0",
            )
        elif name == "rollback":
            sp.add_argument("--to", type=int, help="revision number (default: the previous)")
            sp.add_argument(
                "--actor",
                help="GitHub login rolling back, checked like a promotion to the stage of that "
                "name (default: GITHUB_ACTOR, and on a re-run GITHUB_TRIGGERING_ACTOR too)",
            )
        else:
            sp.add_argument(*COMMON["version"][:1], **COMMON["version"][1])  # type: ignore[arg-type]
            sp.add_argument("--image", help="REF@sha256:... (default: the version's image tag)")
        if name == "deploy":
            sp.add_argument("--dry-run", action="store_true", help="render and plan only")
            sp.add_argument(
                "--shadow",
                action="store_true",
                help="run the version beside the serving one on a copy of live requests and "
                "compare their answers (the gate `rollout: {strategy: shadow}` requires); "
                "nothing changes for clients",
            )

    sp = add("init", cmd_init, "scaffold lepton.yaml and the workflows (never overwrites)")
    sp.add_argument("--model", help="model name (default: from the directory)")
    sp.add_argument("--train", help="train command")
    sp.add_argument("--evaluate", help="evaluate command")
    sp.add_argument("--metrics", help="metrics file the train or evaluate command writes")
    sp.add_argument("--yes", action="store_true", help="ask nothing; may train once, then run")
    sp.add_argument("--no-run", action="store_true", help="only write the files; run nothing")

    sp = add("extras", cmd_extras, "print the optional dependency sets a step needs", "model")
    sp.add_argument("step", help="register, build, promote, accept-tag, deploy, rollback or pull")
    sp.add_argument("--builder", choices=("layers", "dockerfile"))

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
    from lepton_ci.core.errors import LeptonError, MissingExtra
    from lepton_ci.core.escape import md_fence
    from lepton_ci.core.gha import Runtime, debug_enabled
    from lepton_ci.core.interrupt import Terminated, installed
    from lepton_ci.core.paths import enter

    debug = args.debug or debug_enabled()
    start_dir = Path.cwd()
    try:
        if args.directory:
            enter(args.directory)  # like `git -C`: relative paths, DIR's own too, are from DIR
        try:
            with installed():  # SIGTERM unwinds like Ctrl-C: every cleanup runs
                return int(args.fn(args))
        except ModuleNotFoundError as e:  # an optional extra missing: say which to install
            raise (MissingExtra.of(e) or e) from None
    except LeptonError as e:
        rt = Runtime(stream=sys.stderr)
        rt.error(str(e), title=f"lepton-ci {args.command}", file=e.file, line=e.line, col=e.col)
        # The message can quote a hostile bundle or name: it must not close the block.
        rt.summary(f"**lepton-ci {args.command} failed**\n\n{md_fence(e)}")
        if debug:
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        Runtime(stream=sys.stderr).error(f"lepton-ci {args.command}: stopped by SIGINT (Ctrl-C)")
        return 130
    except Terminated as e:
        Runtime(stream=sys.stderr).error(f"lepton-ci {args.command}: {e}")
        return 128 + e.signum
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; stop quietly as Unix tools do.
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

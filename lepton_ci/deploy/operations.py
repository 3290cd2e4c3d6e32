"""Operations behind `render`, `deploy`, `rollback` and `history ENV`.

`EnvironmentOperation` is one environment of one model, like Helm's `action.Upgrade` and
`action.Rollback`: it builds the deployer on the configured target, keeps the GitHub Deployment
bookkeeping and writes the step's outputs and summary, and returns what happened as data.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lepton_ci.core import extras
from lepton_ci.core.config import DeployEnvironment
from lepton_ci.core.context import Context
from lepton_ci.core.errors import LeptonError, MissingExtra, RegistryError
from lepton_ci.core.escape import md_cell
from lepton_ci.core.gha import Runtime
from lepton_ci.core.interrupt import Terminated, deferred, signum_of
from lepton_ci.core.oci_client import Ref, client_factory
from lepton_ci.core.outputs import DeployOutputs, RollbackOutputs
from lepton_ci.core.prometheus import Prometheus
from lepton_ci.core.semver import Version, image_tag
from lepton_ci.deploy import manifests, shadowing
from lepton_ci.deploy.deployer import Deployer, DeployFailed
from lepton_ci.deploy.github_deployments import Recorder
from lepton_ci.deploy.manifests import Release
from lepton_ci.deploy.podman import PodmanCLI, PodmanTarget
from lepton_ci.deploy.releases import DeployError, FileStore, Revision, history_text, next_number
from lepton_ci.deploy.shadowing import Shadowed
from lepton_ci.rollout.judge import RevisionJudge
from lepton_ci.versions import authorise, evidence, protected
from lepton_ci.versions.grammar import version_tag
from lepton_ci.versions.registry import Registry


def deployer(ctx: Context, model: str, env_name: str, api_client: Any = None) -> Deployer:
    """The Deployer for one environment, on the target lepton.yaml names.

    `api_client` lets a caller (a test) hand in its own Kubernetes ApiClient."""
    _, cfg = ctx.cfg.model(model)
    if cfg.deploy is None:
        raise LeptonError(
            f"model {model} has no `deploy:` section in lepton.yaml",
            hint="add `deploy: {environments: {staging: {host_port: 18080}}}`",
        )
    log = ctx.rt.notice
    if cfg.deploy.target == "kubernetes":
        from lepton_ci.deploy import kubernetes as k8s_target

        env = cfg.deploy.environments.get(env_name)
        namespace = env.namespace if env else "default"
        if env is not None:
            deploys = {m: c.deploy for m, c in ctx.cfg.config.models.items() if c.deploy}
            manifests.check_names(deploys, model, env_name)
        if api_client is None:
            extras.require("deploy")
        api = api_client or k8s_target.api_client_from_env(dict(ctx.env))
        return Deployer(
            model,
            env_name,
            cfg.deploy,
            ctx.cfg.root,
            target=k8s_target.KubernetesTarget(
                api,
                namespace,
                field_manager=cfg.deploy.field_manager,
                url=env.url if env else None,  # canary_url: the candidate's path under it
            ),
            store=k8s_target.ConfigMapStore(api, namespace, manifests.dns_name(model, env_name)),
            log=log,
        )
    state = ctx.paths.deploy_state(cfg.deploy.state_dir, model, env_name)
    target = PodmanTarget(state, PodmanCLI(ctx.env))
    return Deployer(
        model,
        env_name,
        cfg.deploy,
        ctx.cfg.root,
        target=target,
        store=FileStore(state),
        log=log,
        judge=_revision_judge(ctx, cfg.deploy.environments.get(env_name)),
    )


def _revision_judge(ctx: Context, env: DeployEnvironment | None) -> RevisionJudge | None:
    """A canary's SLOs per revision, where the environment is watched."""
    if env is None or env.watch is None or env.rollout.strategy != "canary":
        return None
    url = ctx.env.get("LEPTON_PROMETHEUS_URL") or env.watch.prometheus
    if not url:
        return None  # `watch` says where Prometheus is missing; the checks still judge
    return RevisionJudge(Prometheus(url, timeout=env.watch.timeout), env.watch.slos)


def find_model_for_env(ctx: Context, env_name: str, model: str | None) -> str:
    if model is not None:
        return model
    with_env = [
        n
        for n, m in ctx.cfg.config.models.items()
        if m.deploy and env_name in m.deploy.environments
    ]
    if len(with_env) == 1:
        return with_env[0]
    if not with_env:
        raise LeptonError(
            f"no model deploys to an environment `{env_name}`",
            hint="declare it under `deploy.environments`",
        )
    raise LeptonError(
        f"several models deploy to `{env_name}`: {', '.join(with_env)}",
        hint="choose one with --model",
    )


def release(
    ctx: Context, model: str, *, version: str | None, image: str | None, revision: int = 0
) -> manifests.Release:
    _, cfg = ctx.cfg.model(model)
    rec = evidence.load(ctx, model, version)
    if not rec.candidate_version:
        raise LeptonError(f"the record of {model} has no version")
    if image is None:
        if cfg.image is None:
            raise LeptonError("no image to deploy: pass --image REF@DIGEST or add `image:`")
        ref = Ref.parse(f"{cfg.image.name}:{image_tag(rec.candidate_version)}")
        client = client_factory(ctx.env, ctx.rt, cfg.image.insecure)(ref.registry)
        digest = client.manifest_digest(ref.repository, ref.reference)
        if digest is None:
            raise LeptonError(
                f"image {ref} not found in the registry",
                hint=f"build it first: `lepton-ci build --model {model}`",
            )
        image = f"{ref.registry}/{ref.repository}@{digest}"
    elif "@sha256:" not in image:
        raise LeptonError(
            f"--image {image} must name a digest (REF@sha256:...)",
            hint="deploys are by digest, so what was checked is what runs",
        )
    return manifests.Release(
        model=model,
        version=rec.candidate_version,
        image=image,
        record_digest=rec.digest(),
        revision=revision,
        run_url=ctx.run_url() or "",
        commit=rec.git.sha,
        who=ctx.env.get("GITHUB_ACTOR") or _git_user(ctx) or ctx.env.get("USER") or "unknown",
    )


def _git_user(ctx: Context) -> str:
    proc = ctx.git.run(["config", "user.name"], check=False)
    return proc.stdout.strip()


def _probe_table(rev: Revision) -> str:
    rows = ["| check | ok | detail |", "|---|---|---|"]
    for p in rev.probes[-20:]:
        rows.append(f"| {md_cell(p.check)} | {'✅' if p.ok else '❌'} | {md_cell(p.detail)} |")
    return "\n".join(rows) + "\n"


def _steps_table(rev: Revision) -> str:
    """A canary's steps for the step summary; reasons carry check details and SLO names."""
    if not rev.steps:
        return ""
    rows = ["| step | verdict | canary share | requests | why |", "|---|---|---|---|---|"]
    for st in rev.steps:
        share = "—" if st.share is None else f"{st.share:.1%}"
        rows.append(
            f"| {st.effective}% | {st.verdict} | {share} | {sum(st.served.values())} "
            f"| {md_cell(st.reason)} |"
        )
    return "\n" + "\n".join(rows) + "\n"


@dataclass
class Applied:
    """A deploy or rollback that finished with a healthy revision serving (or a dry run)."""

    env: str
    revision: Revision
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def text(self) -> str:
        rev = self.revision
        if self.dry_run:
            return (
                f"{rev.manifests.rstrip()}\ndry run: would deploy {rev.version} ({rev.image}) "
                f"to {self.env} as revision {rev.number}"
            )
        if rev.rollback_of is not None:
            return f"{self.env}: revision {rev.number} ({rev.description}) serves {rev.version}"
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"{self.env}: revision {rev.number} deployed {rev.version} ({rev.reason}{notes})"


class EnvironmentOperation:
    """Render, deploy, roll back and list the releases of one model in one environment."""

    def __init__(
        self,
        ctx: Context,
        env_name: str,
        model: str | None = None,
        *,
        api_client: Any = None,
        github: Recorder | None = None,
    ) -> None:
        self.ctx = ctx
        self.env_name = env_name
        self.model = find_model_for_env(ctx, env_name, model)
        self._api_client = api_client
        self._github = github

    @cached_property
    def deployer(self) -> Deployer:
        """Built on first use: `render` works with no cluster (and no kubernetes package)."""
        return deployer(self.ctx, self.model, self.env_name, self._api_client)

    def release(self, version: str | None, image: str | None, revision: int = 0) -> Release:
        return release(self.ctx, self.model, version=version, image=image, revision=revision)

    def render(self, version: str | None = None, image: str | None = None) -> str:
        """The manifests the next revision would apply. Offline, like `helm template`: the
        revision is numbered from the target's history only when it can be read."""
        try:
            number = next_number(self.deployer.history())
        except (DeployError, MissingExtra, ImportError) as e:
            number = 1
            why = e.message if isinstance(e, LeptonError) else f"{e.name} is not installed"
            Runtime(self.ctx.env, stream=sys.stderr).notice(
                f"rendered as revision 1: the history of {self.env_name} was not read ({why})"
            )
        _, cfg = self.ctx.cfg.model(self.model)
        if cfg.deploy is None:  # pragma: no cover - find_model_for_env found it there
            raise LeptonError(f"model {self.model} has no `deploy:` section in lepton.yaml")
        rel = self.release(version, image, number)
        env = cfg.deploy.environments[self.env_name]
        return manifests.render(self.env_name, env, cfg.deploy, rel, self.ctx.cfg.root)

    def history(self) -> list[Revision]:
        return self.deployer.history()

    def history_view(self) -> tuple[list[dict[str, Any]], str]:
        """`history ENV`: the revisions as JSON records (without manifests) and as text."""
        revs = self.history()
        records = [r.model_dump(mode="json", exclude={"manifests"}) for r in revs]
        return records, history_text(self.env_name, revs)

    def _rolled_back(self, rev: Revision) -> Release:
        try:
            commit = Registry(self.ctx.git).read(rev.model).find(rev.model, rev.version).sha
        except LeptonError:  # a shallow clone without the tag: GitHub resolves the tag name
            commit = version_tag(rev.model, Version.parse(rev.version))
        return Release(
            model=rev.model,
            version=rev.version,
            image=rev.image,
            record_digest=rev.record_digest,
            revision=rev.number,
            run_url=self.ctx.run_url() or "",
            commit=commit,
        )

    def deploy(
        self, version: str | None = None, image: str | None = None, *, dry_run: bool = False
    ) -> Applied:
        rel = self.release(version, image)
        self._trusted(rel)
        if not dry_run:
            self._shadowed(rel)
        rt = self.ctx.rt
        github = None if dry_run else (self._github or Recorder.from_env(self.ctx.env))
        if github is not None:
            try:
                github.start(self.env_name, rel)
            except LeptonError as e:  # before anything is applied: refused whole
                e.message = f"{e.message}; nothing was deployed"
                raise
        env_url = self.deployer.env.check_url()
        try:
            out = self.deployer.deploy(rel, dry_run=dry_run)
        except DeployFailed as e:
            r = e.outcome.reverted_to
            DeployOutputs(
                status="reverted",
                revision=str(e.outcome.revision.number),
                serving_revision=str(r.number if r else ""),
                serving_version=r.version if r else "",
            ).write(rt)
            rt.summary(
                f"**{self.env_name}: deploy of {rel.version} failed and was reverted**\n\n"
                + _probe_table(e.outcome.revision)
                + _steps_table(e.outcome.revision)
            )
            if github is not None:
                where = r.version if r else "nothing"
                github.finish(
                    False, f"{rel.version} failed; reverted to {where}", rel.run_url, env_url
                )
            raise
        except LeptonError as e:
            if github is not None:
                github.finish(False, e.message, rel.run_url, env_url)
            raise
        except (KeyboardInterrupt, Terminated) as stop:  # the deployer has put back what served
            if github is not None:
                with deferred():
                    why = f"interrupted by {signal.Signals(signum_of(stop)).name}"
                    github.finish(False, f"{rel.version} {why}", rel.run_url, env_url)
            raise
        rev = out.revision
        if dry_run:
            return Applied(self.env_name, rev, out.notes, dry_run=True)
        if github is not None:
            github.finish(
                True, f"{rel.version} healthy (revision {rev.number})", rel.run_url, env_url
            )
        DeployOutputs(
            status=rev.status,
            revision=str(rev.number),
            serving_revision=str(rev.number),
            serving_version=rev.version,
        ).write(rt)
        rt.summary(
            f"**{self.env_name}: {rel.version} deployed (revision {rev.number})**\n\n"
            + _probe_table(rev)
            + _steps_table(rev)
        )
        return Applied(self.env_name, rev, out.notes)

    def shadow(self, version: str | None = None, image: str | None = None) -> Shadowed:
        """`deploy --shadow`: the candidate beside the serving revision on mirrored requests;
        its result kept in git (and pushed) for the gate, the PR comment and the site."""
        rel = self.release(version, image)
        self._trusted(rel)
        return shadowing.run_and_keep(self.ctx, self.deployer, rel)

    def _shadowed(self, rel: Release) -> None:
        """Under `rollout: {strategy: shadow}`, a version replaces what serves only after a
        passing shadow rollout of it in this environment."""
        shadowing.require(self.ctx, self.deployer, rel)

    def _trusted(self, rel: Release) -> None:
        """Under `trust.require`, the version and its image (by digest) must verify before
        anything is recorded or applied."""
        from lepton_ci.versions import trusted

        what = f"deploy of {self.model} {rel.version} to {self.env_name}"
        trusted.require_named(self.ctx, self.model, rel.version, what)
        trusted.require_image(self.ctx, rel.image, self.model, rel.version, what)

    def authorise_rollback(self, actor: str | None = None) -> None:
        """Who may promote to a stage may roll back the environment of that name, under the
        same protected policy; an environment no stage is named for has no policy."""
        policy = protected.load(self.ctx)
        if self.env_name not in policy.stages:
            Runtime(self.ctx.env, sys.stderr).notice(
                f"no stage `{self.env_name}` in the policy on {policy.where}: anyone who can "
                f"run this may roll back {self.env_name} (name a stage like the environment "
                "to restrict it)"
            )
            return
        actors = authorise.run_actors(self.ctx.env, actor)
        try:
            authorise.authorise(self.ctx, policy, self.env_name, actors, None, doing="rollback of")
        except RegistryError as e:
            e.message = (
                f"rollback of {self.env_name} refused: {e.message} (who may promote to "
                f"`{self.env_name}` may roll it back)"
            )
            raise

    def rollback(self, to: int | None = None, *, actor: str | None = None) -> Applied:
        self.authorise_rollback(actor)
        out = self.deployer.rollback(to)
        rev = out.revision
        github = self._github or Recorder.from_env(self.ctx.env)
        if github is not None:
            # A rollback is a new deploy of an earlier release: on the Environments page too.
            # It has happened by now, so a failure to record it is a warning, not a failure.
            try:
                github.start(self.env_name, self._rolled_back(rev))
                github.finish(
                    True,
                    f"rolled back to {rev.version} (revision {rev.number})",
                    self.ctx.run_url() or "",
                    self.deployer.env.check_url(),
                )
            except LeptonError as e:
                self.ctx.rt.warning(f"rolled back, but not recorded as a GitHub Deployment: {e}")
        RollbackOutputs(
            status=rev.status,
            revision=str(rev.number),
            serving_revision=str(rev.number),
            serving_version=rev.version,
        ).write(self.ctx.rt)
        return Applied(self.env_name, rev, out.notes)

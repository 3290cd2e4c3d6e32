"""Deploys recorded as GitHub Deployments, so the repository's Environments page shows them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from lepton_ci.core.github import GitHubClient, GitHubError
from lepton_ci.deploy.manifests import Release


@dataclass
class Recorder:
    client: GitHubClient
    repo: str
    deployment_id: int | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], client: GitHubClient | None = None
    ) -> Recorder | None:
        """None outside GitHub: local deploys are recorded in the release history only."""
        repo = env.get("GITHUB_REPOSITORY")
        token = env.get("LEPTON_GITHUB_TOKEN") or env.get("GITHUB_TOKEN")
        if not (repo and token):
            return None
        return cls(client or GitHubClient.from_env(env), repo)

    def start(self, env_name: str, release: Release) -> None:
        # A marker of this very request, so a retry after a lost answer finds the Deployment
        # GitHub already made instead of making a second one.
        request_id = secrets.token_hex(8)
        path = f"/repos/{self.repo}/deployments"

        def landed() -> dict[str, Any] | None:
            recent = self.client.json("GET", f"{path}?environment={quote(env_name)}&per_page=30")
            return next(
                (d for d in recent or [] if (d.get("payload") or {}).get("request") == request_id),
                None,
            )

        ref = release.commit or release.version
        try:
            d = self._create(path, ref, env_name, release, request_id, landed)
        except GitHubError as e:
            if e.status != 422 or "no ref found" not in e.message.lower():
                raise
            raise GitHubError(
                f"GitHub has no commit {ref} in {self.repo} to record a Deployment of "
                f"({e.message.split(': ', 1)[-1]})",
                status=422,
                hint="push the commit (and its version tag) to GitHub first; to deploy "
                "without recording it on GitHub, unset GITHUB_TOKEN",
            ) from None
        if not isinstance(d.get("id"), int):
            raise GitHubError(
                f"GitHub API POST /repos/{self.repo}/deployments answered without a deployment id"
            )
        self.deployment_id = d["id"]
        self._status("in_progress", f"deploying {release.version}", release.run_url, "")

    def _create(
        self,
        path: str,
        ref: str,
        env_name: str,
        release: Release,
        request_id: str,
        landed: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        return self.client.create(
            path,
            {
                "ref": ref,
                "environment": env_name,
                "description": f"{release.model} {release.version}"[:140],
                "auto_merge": False,
                "required_contexts": [],
                "production_environment": env_name in ("prod", "production"),
                "payload": {
                    "model": release.model,
                    "version": release.version,
                    "image": release.image,
                    "record_digest": release.record_digest,
                    "request": request_id,
                },
            },
            landed=landed,
        )

    def finish(self, ok: bool, description: str, run_url: str, env_url: str) -> None:
        if self.deployment_id is not None:
            self._status("success" if ok else "failure", description, run_url, env_url)

    def _status(self, state: str, description: str, log_url: str, env_url: str) -> None:
        body = {
            "state": state,
            "description": description[:140],
            "log_url": log_url,
            "environment_url": env_url,
        }
        path = f"/repos/{self.repo}/deployments/{self.deployment_id}/statuses"

        def landed() -> dict[str, Any] | None:
            # Statuses of one deploy are posted one after another: if the newest one is the
            # one being posted, it landed.
            newest = next(iter(self.client.json("GET", f"{path}?per_page=1") or []), None)
            same = newest and all(newest.get(k) == body[k] for k in ("state", "description"))
            return newest if same else None

        self.client.create(path, body, landed=landed)

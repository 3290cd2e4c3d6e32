"""Deploys recorded as GitHub Deployments, so the repository's Environments page shows them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

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
        d = self.client.object(
            "POST",
            f"/repos/{self.repo}/deployments",
            data=json.dumps(
                {
                    "ref": release.commit or release.version,
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
                    },
                }
            ),
        )
        if not isinstance(d.get("id"), int):
            raise GitHubError(
                f"GitHub API POST /repos/{self.repo}/deployments answered without a deployment id"
            )
        self.deployment_id = d["id"]
        self._status("in_progress", f"deploying {release.version}", release.run_url, "")

    def finish(self, ok: bool, description: str, run_url: str, env_url: str) -> None:
        if self.deployment_id is not None:
            self._status("success" if ok else "failure", description, run_url, env_url)

    def _status(self, state: str, description: str, log_url: str, env_url: str) -> None:
        self.client.json(
            "POST",
            f"/repos/{self.repo}/deployments/{self.deployment_id}/statuses",
            data=json.dumps(
                {
                    "state": state,
                    "description": description[:140],
                    "log_url": log_url,
                    "environment_url": env_url,
                }
            ),
        )

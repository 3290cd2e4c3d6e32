"""One GitHub issue per model and environment, kept by `lepton-ci watch --issue`.

A breach opens the issue (or comments the new evidence on the one already open); the next
healthy evaluation comments that it is healthy again and closes it; an evaluation that could
not judge (Prometheus down, or no SLO had data) leaves it as it is. The issue is found by a
hidden marker, so a renamed title or extra labels do not make a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lepton_ci.core.errors import WatchError
from lepton_ci.core.github import GitHubClient

if TYPE_CHECKING:
    from lepton_ci.core.gha import Runtime

LABEL = "lepton-ci-watch"


@dataclass
class IssueKeeper:
    client: GitHubClient
    repo: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], rt: Runtime) -> IssueKeeper:
        repo = env.get("GITHUB_REPOSITORY", "")
        if not repo or not (env.get("LEPTON_GITHUB_TOKEN") or env.get("GITHUB_TOKEN")):
            raise WatchError(
                "--issue needs GITHUB_REPOSITORY and a token (GITHUB_TOKEN)",
                hint="run it in Actions with `permissions: {issues: write}`, or drop --issue",
            )
        return cls(GitHubClient.from_env(env, rt), repo)

    @staticmethod
    def marker(model: str, env: str) -> str:
        return f"<!-- lepton-ci:watch model={model} env={env} -->"

    def find(self, model: str, env: str) -> dict[str, Any] | None:
        """The open issue of this model and environment, if there is one."""
        mark = self.marker(model, env)
        issues = self.client.issues(self.repo, LABEL)
        return next((i for i in issues if mark in (i.get("body") or "")), None)

    def sync(self, model: str, env: str, status: str, evidence: str) -> str:
        """Open, update or close the issue after an evaluation (`status` healthy, breached or
        unknown); returns its URL ("" if there is none)."""
        if status == "unknown":
            return ""
        issue = self.find(model, env)
        if status == "breached":
            if issue is None:
                issue = self.client.create_issue(
                    self.repo,
                    f"{model}: SLO breach in {env}",
                    f"{self.marker(model, env)}\n{evidence}",
                    [LABEL],
                )
            else:
                self.client.create_comment(self.repo, issue["number"], evidence)
            return str(issue.get("html_url", ""))
        if issue is None:
            return ""
        self.client.create_comment(
            self.repo, issue["number"], f"Healthy again; closing.\n\n{evidence}"
        )
        self.client.update_issue(
            self.repo, issue["number"], state="closed", state_reason="completed"
        )
        return str(issue.get("html_url", ""))

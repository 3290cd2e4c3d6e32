"""A local, stateful HTTP server speaking the GitHub REST API lepton-ci uses.

Real HTTP on loopback, so the real client (requests, retries, pagination) is exercised.
State: issues and their comments, pull requests, deployments and statuses, collaborator
permissions, teams, releases, the refs GitHub holds. Answers are GitHub's own examples from its
OpenAPI description (tests/support/openapi) with the state laid over them, and every request
and response is checked against that description: a mismatch is recorded in
`state.violations` and fails the test on exit.
It refuses what GitHub refuses: a token made for one repository sees no other (404), a token
without the permission an endpoint needs gets 403 "Resource not accessible by integration"
(a workflow's GITHUB_TOKEN has exactly its job's `permissions:`, see `job_token`), a login
that does not exist is 404 and a user without access has permission `none`, a deployment of
a ref GitHub does not hold is 422.
Faults can be queued per method and path, before the request is applied (the write never
happened) or after it (the write landed, then the answer was lost: a 502 from a proxy);
every request is logged.
Run standalone for workflow tests: `python -m tests.support.github_server --port 0`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import openapi

BODY_LIMIT = 65536
WORKFLOW_TOKEN = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
API = "https://api.github.com"
# GitHub's `permission` field is the legacy level: maintain reads as write, triage as read.
LEGACY = {
    "none": "none",
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}


@dataclass
class Fault:
    method: str
    path: str  # regex on the path
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = field(default_factory=lambda: {"message": "injected"})  # bytes: sent as they are
    times: int = 1
    after: bool = False  # apply the request, then answer with the fault


# GitHub's repository permissions, spelt as a workflow's `permissions:` spells them.
SCOPES = (
    "actions",
    "checks",
    "contents",
    "deployments",
    "issues",
    "packages",
    "pages",
    "pull-requests",
    "statuses",
)
LEVELS = {"none": 0, "read": 1, "write": 2}
# A job that sets no `permissions:` in a repository with GitHub's restricted default.
RESTRICTED = {"contents": "read", "packages": "read"}


@dataclass
class Token:
    login: str
    write: bool = True  # False: every permission read only (a fork PR's token)
    user_type: str = "Bot"
    members_read: bool = False  # GITHUB_TOKEN never may read org teams; a PAT/App token can
    # The repositories an installation token (GITHUB_TOKEN) was made for; None: any (a PAT).
    repos: frozenset[str] | None = None
    # The repository permissions it has (unlisted: none); None: write on everything.
    permissions: dict[str, str] | None = None

    def level(self, scope: str) -> str:
        if scope == "metadata":
            return "read"  # every token that sees a repository reads its metadata
        have = "write" if self.permissions is None else self.permissions.get(scope, "none")
        return "read" if have == "write" and not self.write else have


def job_permissions(workflow: dict[str, Any], job: str) -> dict[str, str]:
    """The permissions GITHUB_TOKEN gets in `job`: the job's `permissions:`, else the
    workflow's, else the restricted default; `read-all`, `write-all` and `{}` as GitHub
    reads them."""
    spec: Any = workflow["jobs"][job].get("permissions", workflow.get("permissions"))
    if spec is None:
        return dict(RESTRICTED)
    if isinstance(spec, str):
        level = {"read-all": "read", "write-all": "write"}[spec]
        return dict.fromkeys(SCOPES, level)
    unknown = set(spec) - set(SCOPES) - {"id-token", "security-events", "attestations"}
    if unknown:
        raise ValueError(f"not a GitHub permission: {', '.join(sorted(unknown))}")
    return {k: str(v) for k, v in spec.items() if k in SCOPES}


class GitHubState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1000)
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.permissions: dict[tuple[str, str], str] = {}
        self.teams: dict[tuple[str, str], set[str]] = {}
        # Invited, not yet accepted: GitHub answers the membership with 200 and state pending.
        self.pending: dict[tuple[str, str], set[str]] = {}
        self.custom_roles: dict[str, str] = {}  # custom repository role -> its base role
        self.deployments: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[int, list[dict[str, Any]]] = {}
        self.issues: dict[str, list[dict[str, Any]]] = {}
        self.releases: dict[str, list[dict[str, Any]]] = {}
        self.latest: dict[str, str] = {}  # repo -> the tag of the release marked latest
        # Logins that exist beyond those with a permission, a team or a comment: anyone else
        # is "not a user" (404).
        self.users: set[str] = {"octocat", "github-actions[bot]"}
        # The refs GitHub holds per repository (full name, e.g. refs/tags/X -> commit sha),
        # and/or a git repository standing for GitHub's copy (a test's bare `origin`).
        self.refs: dict[str, dict[str, str]] = {}
        self.git: dict[str, Path] = {}
        self.tokens: dict[str, Token] = {
            "test-token": Token("github-actions[bot]"),
            # The workflow's GITHUB_TOKEN as GitHub issues it: an installation token (`ghs_`).
            WORKFLOW_TOKEN: Token("github-actions[bot]"),
            "teams-token": Token("release-app[bot]", members_read=True),
        }
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.violations: list[str] = []

    def add_pull(
        self,
        repo: str,
        number: int,
        head_sha: str,
        *,
        fork: bool = False,
        title: str = "A change",
        head_ref: str = "feature",
        labels: tuple[str, ...] = (),
        body: str = "Please pull these awesome changes in!",
        chatter: str | None = "model=digits workflow=model-pr",
    ) -> None:
        """A pull request, and its issue view: GitHub's /issues lists pull requests too,
        each with a `pull_request` key, and PATCH /issues/N closes one. Its conversation
        already holds what others said, as a real one does: a reviewer, another app's bot,
        and the PR's author pasting lepton-ci's comment for the sticky marker `chatter` names
        (None: no conversation). Added again, only its head moves (a push to the PR)."""
        head_repo = f"forker/{repo.split('/')[1]}" if fork else repo
        if (repo, number) in self.pulls:
            head = self.pulls[(repo, number)]["head"]
            head.update(sha=head_sha, ref=head_ref, label=f"{head_repo.split('/')[0]}:{head_ref}")
            return
        pr = openapi.example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
        # requested_teams: GitHub's own example lacks the `type` its schema now requires.
        pr.update(
            requested_teams=[],
            number=number,
            title=title,
            state="open",
            url=f"{API}/repos/{repo}/pulls/{number}",
            html_url=f"https://github.com/{repo}/pull/{number}",
        )
        for side, full_name, ref, sha in (
            ("head", head_repo, head_ref, head_sha),
            ("base", repo, "main", "0" * 40),
        ):
            part = pr[side]
            owner, name = full_name.split("/")
            part.update(ref=ref, sha=sha, label=f"{owner}:{ref}")
            part["repo"].update(full_name=full_name, name=name, fork=side == "head" and fork)
            part["repo"]["owner"] = user(owner, "User")
        label = pr["labels"][0]
        pr.update(body=body, labels=[{**label, "name": n} for n in labels])
        self.pulls[(repo, number)] = pr
        issue = self.new_issue(repo, title, body, list(labels), number=number)
        issue["pull_request"] = {
            "url": pr["url"],
            "html_url": pr["html_url"],
            "diff_url": f"{pr['html_url']}.diff",
            "patch_url": f"{pr['html_url']}.patch",
            "merged_at": None,
        }
        issue["html_url"] = pr["html_url"]
        if chatter is not None:
            self.new_comment(repo, number, "LGTM once the gates pass.", "octocat")
            self.new_comment(repo, number, "Coverage: 91% (+0.2%)", "codecov[bot]", "Bot")
            meta = json.dumps({"sha": head_sha, "run": 10**9, "digest": "pasted"})
            self.new_comment(
                repo,
                number,
                f"<!-- lepton-ci:sticky {chatter} -->\n**gates passed** (pasted: why did "
                f"accuracy drop?)\n<!-- lepton-ci:meta {meta} -->\n",
                head_repo.split("/")[0],
            )

    def new_comment(
        self,
        repo: str,
        number: int,
        body: str,
        login: str = "octocat",
        kind: str = "User",
        association: str = "",
    ) -> dict[str, Any]:
        """A comment by `login`. Its author_association is what GitHub derives: OWNER for the
        repository's owner, COLLABORATOR with a permission, MEMBER of the owner's teams, else
        NONE (bots included)."""
        cid = next(self.ids)
        owner = repo.split("/")[0]
        if not association:
            if login == owner:
                association = "OWNER"
            elif self.permissions.get((repo, login), "none") != "none":
                association = "COLLABORATOR"
            elif any(login in m for (org, _), m in self.teams.items() if org == owner):
                association = "MEMBER"
            else:
                association = "NONE"
        self.users.add(login)
        c = openapi.example("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 201)
        c.update(
            id=cid,
            node_id=f"IC_{cid}",
            url=f"{API}/repos/{repo}/issues/comments/{cid}",
            html_url=f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}",
            issue_url=f"{API}/repos/{repo}/issues/{number}",
            body=body,
            created_at=_now(),
            updated_at=_now(),
            user=user(login, kind),
            author_association=association,
        )
        self.comments.setdefault((repo, number), []).append(c)
        return dict(c)

    def new_issue(
        self,
        repo: str,
        title: str,
        body: str | None,
        labels: list[str],
        login: str = "octocat",
        number: int = 0,
    ) -> dict[str, Any]:
        """An issue as GitHub's own example has it, with this repository's state over it.
        Issues and pull requests share one sequence of numbers."""
        items = self.issues.setdefault(repo, [])
        number = number or max((i["number"] for i in items), default=0) + 1
        issue = openapi.example("POST", "/repos/{owner}/{repo}/issues", 201)
        label = issue["labels"][0]
        iid = next(self.ids)
        issue.update(
            id=iid,
            node_id=f"I_{iid}",
            number=number,
            title=title,
            body=body,
            state="open",
            labels=[{**label, "name": n} for n in labels],
            user=user(login, "Bot" if login.endswith("[bot]") else "User"),
            url=f"{API}/repos/{repo}/issues/{number}",
            html_url=f"https://github.com/{repo}/issues/{number}",
            created_at=_now(),
            updated_at=_now(),
        )
        for key in ("state_reason", "pull_request", "closed_at"):
            issue.pop(key, None) if key != "closed_at" else issue.update(closed_at=None)
        items.append(issue)
        return issue

    def count(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p, _ in self.log if (method is None or m == method) and path in p)

    def job_token(self, workflow: Path, job: str, repo: str) -> str:
        """A GITHUB_TOKEN for `job` of the workflow file: made for `repo` only, with exactly
        the permissions the job declares. Returns the token to pass as the secret."""
        import yaml

        perms = job_permissions(yaml.safe_load(workflow.read_text()), job)
        name = f"ghs_{workflow.stem}_{job}_{next(self.ids)}"
        self.tokens[name] = Token("github-actions[bot]", repos=frozenset({repo}), permissions=perms)
        return name

    def known_user(self, login: str) -> bool:
        return (
            login in self.users
            or any(u == login for _, u in self.permissions)
            or any(login in m for m in [*self.teams.values(), *self.pending.values()])
        )

    def has_ref(self, repo: str, ref: str) -> bool:
        """Does GitHub hold `ref` (a branch, a tag, or a commit by its sha) in `repo`?"""
        if not ref:
            return False
        held = self.refs.get(repo, {})
        names = (f"refs/heads/{ref}", f"refs/tags/{ref}", ref)
        if any(n in held for n in names) or ref in held.values():
            return True
        if repo not in self.git:
            return False
        for name in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            found = subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
                cwd=self.git[repo],
                capture_output=True,
                check=False,
            )
            if found.returncode == 0:
                # a sha must name the commit in full or by a prefix of at least 7
                return name != ref or len(ref) >= 7 or found.stdout.startswith(ref.encode())
        return False

    def needs(self, method: str, path: str) -> tuple[str, str, str] | None:
        """(repository, permission, level) a request to `path` needs; None for org paths."""
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(?:/(.*))?", path)
        if not m:
            return None
        repo, rest = m[1], m[2] or ""
        level = "read" if method in ("GET", "HEAD") else "write"
        if rest.startswith("deployments"):
            return repo, "deployments", level
        if rest.startswith("pulls"):
            return repo, "pull-requests", level
        if rest.startswith("issues"):
            number = re.match(r"issues/(\d+)", rest)
            comment = re.match(r"issues/comments/(\d+)", rest)
            if comment:
                number = next(
                    (
                        n
                        for (r, n), items in self.comments.items()
                        if r == repo and any(c["id"] == int(comment[1]) for c in items)
                    ),
                    None,
                )
            elif number:
                number = int(number[1])
            # A pull request's conversation is the pull request's: `pull-requests` decides.
            pr = number is not None and (repo, number) in self.pulls
            return repo, "pull-requests" if pr else "issues", level
        return repo, "metadata", "read"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def make_handler(state: GitHubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
            raw = isinstance(body, bytes)  # an injected answer that is not GitHub's on purpose
            data = body if raw else (b"" if body is None else json.dumps(body).encode())
            headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
            if body is None:
                del headers["Content-Type"]
            url = urlsplit(self.path)
            if not raw:
                state.violations.extend(
                    openapi.violations(
                        self.command,
                        url.path.removeprefix("/api/v3"),
                        parse_qs(url.query),
                        dict(self.headers.items()),
                        self.raw,
                        status,
                        headers,
                        data,
                    )
                )
            state.log.append((self.command, self.path, status))  # before the client can read
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ratelimit-limit", "5000")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            self.raw = self.rfile.read(n) if n else b""
            return json.loads(self.raw) if self.raw else {}

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path.removeprefix("/api/v3"), parse_qs(url.query)
            self.raw = b""
            body = self._body() if self.command in ("POST", "PATCH", "PUT") else {}
            fault = None
            with state.lock:
                for f in state.faults:
                    if f.times > 0 and f.method == self.command and re.search(f.path, path):
                        f.times -= 1
                        fault = f
                        break
            if fault is not None and not fault.after:
                self._reply(fault.status, fault.body, fault.headers)
                return
            auth = self.headers.get("Authorization", "")
            token = state.tokens.get(auth.removeprefix("Bearer ").removeprefix("token "))
            if token is None:
                self._reply(401, {"message": "Bad credentials"})
                return
            with state.lock:
                need = state.needs(self.command, path)
            if need is not None and token.repos is not None and need[0] not in token.repos:
                self._reply(404, not_found())  # another repository: as if it did not exist
                return
            if need is not None and LEVELS[token.level(need[1])] < LEVELS[need[2]]:
                self._reply(403, not_accessible())
                return
            with state.lock:
                status, payload, headers = route(
                    state, self.command, path, query, body, token, self.headers.get("Host", "")
                )
            if fault is not None:  # the write landed; the answer is lost on the way back
                self._reply(fault.status, fault.body, fault.headers)
                return
            self._reply(status, payload, headers)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

    return Handler


def route(
    state: GitHubState,
    method: str,
    path: str,
    query: dict[str, list[str]],
    body: Any,
    token: Token,
    host: str,
) -> tuple[int, Any, dict[str, str]]:
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path)
    if m:
        key = (m[1], int(m[2]))
        items = state.comments.setdefault(key, [])
        if method == "GET":
            return paginate(items, query, path, host)
        if method == "POST":
            if len(body.get("body", "")) > BODY_LIMIT:
                return 422, too_long(), {}
            c = state.new_comment(m[1], int(m[2]), body["body"], token.login, token.user_type)
            return 201, c, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path)
    if m:
        for (repo, _), items in state.comments.items():
            for c in items:
                if repo == m[1] and c["id"] == int(m[2]):
                    if method == "PATCH":
                        if len(body.get("body", "")) > BODY_LIMIT:
                            return 422, too_long(), {}
                        c["body"], c["updated_at"] = body["body"], _now()
                        return 200, c, {}
                    if method == "DELETE":
                        items.remove(c)
                        return 204, None, {}
        return 404, not_found(), {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues", path)
    if m:
        items = state.issues.setdefault(m[1], [])
        if method == "GET":
            want = query.get("state", ["open"])[0]
            labels = set(filter(None, query.get("labels", [""])[0].split(",")))
            found = [
                i
                for i in items
                if want in ("all", i["state"]) and labels <= {lb["name"] for lb in i["labels"]}
            ]
            return paginate(found[::-1], query, path, host)
        if method == "POST":
            if not body.get("title"):
                return 422, {"message": "Validation Failed"}, {}
            issue = state.new_issue(
                m[1], body["title"], body.get("body"), body.get("labels", []), token.login
            )
            return 201, issue, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)", path)
    if m and method in ("GET", "PATCH"):
        issue = next((i for i in state.issues.get(m[1], []) if i["number"] == int(m[2])), None)
        if issue is None:
            return 404, not_found(), {}
        if method == "PATCH":
            for k in ("title", "body", "state", "state_reason"):
                if k in body:
                    issue[k] = body[k]
            if issue.get("state_reason") is None:  # nullable; openapi-core's enum check says no
                issue.pop("state_reason", None)
            pr = state.pulls.get((m[1], int(m[2])))
            if pr is not None:  # closing a pull request's issue view closes the pull request
                pr["state"] = issue["state"]
            issue["updated_at"] = _now()
        return 200, issue, {}
    if path == "/user" and method == "GET":
        if token.user_type == "Bot":  # an installation token: GITHUB_TOKEN or a GitHub App's
            return 403, not_accessible("users/users#get-the-authenticated-user"), {}
        me = openapi.example("GET", "/user")
        login = token.login
        me.update({k: v.replace("octocat", login) for k, v in me.items() if isinstance(v, str)})
        me.update(id=zlib.crc32(token.login.encode()), node_id=f"U_{token.login}", type="User")
        # GitHub's own example predates `user_view_type`, the field its schema now tells by.
        me["user_view_type"] = "private"
        return 200, me, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls/(\d+)", path)
    if m and method == "GET":
        pr = state.pulls.get((m[1], int(m[2])))
        return (200, pr, {}) if pr else (404, not_found(), {})
    m = re.fullmatch(r"/repos/([^/]+)/([^/]+)", path)
    if m and method == "GET":
        repo = openapi.example("GET", "/repos/{owner}/{repo}")
        full_name = f"{m[1]}/{m[2]}"
        repo.update(name=m[2], full_name=full_name, default_branch="main", fork=False)
        repo.setdefault("language", "Python")  # required by the schema, absent from the example
        for key in ("parent", "source", "template_repository"):  # not a fork; the example's
            repo.pop(key, None)  # copies of them predate fields the schema now requires
        repo["owner"] = {**repo["owner"], **user(m[1], "Organization")}
        return 200, _replace(repo, "octocat/Hello-World", full_name), {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/collaborators/([^/]+)/permission", path)
    if m and method == "GET":
        if not state.known_user(m[2]):
            return 404, not_found(), {}
        # Someone who exists but has no access to the repository: permission `none`.
        role = state.permissions.get((m[1], m[2]), "none")
        base = state.custom_roles.get(role, role)
        collaborator = {**user(m[2]), "role_name": role}
        return 200, {"permission": LEGACY[base], "role_name": role, "user": collaborator}, {}
    m = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)", path)
    if m and method == "GET":
        # A token without organization Members: read sees no team at all.
        if not token.members_read or (m[1], m[2]) not in state.teams:
            return 404, not_found(), {}
        team = openapi.example("GET", "/orgs/{org}/teams/{team_slug}")
        # GitHub's own example predates `type` and `organization.archived_at`.
        team.update(slug=m[2], name=m[2], type="organization")
        team["organization"].update(login=m[1], archived_at=None)
        return 200, team, {}
    m = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)", path)
    if m and method == "GET":
        active = state.teams.get((m[1], m[2]), set())
        pending = state.pending.get((m[1], m[2]), set())
        if token.members_read and m[3] in active | pending:
            member = openapi.example("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}")
            member.update(state="active" if m[3] in active else "pending", role="member")
            return 200, member, {}
        return 404, None, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/deployments", path)
    if m:
        items = state.deployments.setdefault(m[1], [])
        if method == "GET":
            env = query.get("environment", [None])[0]
            return paginate(
                [d for d in items if env in (None, d["environment"])][::-1], query, path, host
            )
        if method == "POST":
            if "ref" not in body:
                return 422, invalid('"ref" wasn\'t supplied.'), {}
            if not state.has_ref(m[1], str(body["ref"])):
                return 422, no_ref(str(body["ref"])), {}
            did = next(state.ids)
            d = openapi.example("POST", "/repos/{owner}/{repo}/deployments", 201)
            env = body.get("environment", "production")
            d.update(
                id=did,
                node_id=f"DE_{did}",
                url=f"{API}/repos/{m[1]}/deployments/{did}",
                statuses_url=f"{API}/repos/{m[1]}/deployments/{did}/statuses",
                repository_url=f"{API}/repos/{m[1]}",
                ref=body.get("ref"),
                sha=body.get("sha") or "0" * 40,
                environment=env,
                original_environment=env,
                production_environment=bool(body.get("production_environment")),
                description=body.get("description"),
                payload=body.get("payload", {}),
                created_at=_now(),
                updated_at=_now(),
                creator=user(token.login, token.user_type),
            )
            items.append(d)
            return 201, d, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/deployments/(\d+)/statuses", path)
    if m:
        items = state.statuses.setdefault(int(m[2]), [])
        if method == "GET":
            return paginate(items[::-1], query, path, host)
        if method == "POST":
            sid = next(state.ids)
            s = openapi.example(
                "POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", 201
            )
            s.update(
                id=sid,
                node_id=f"DES_{sid}",
                url=f"{API}/repos/{m[1]}/deployments/{m[2]}/statuses/{sid}",
                deployment_url=f"{API}/repos/{m[1]}/deployments/{m[2]}",
                repository_url=f"{API}/repos/{m[1]}",
                state=body["state"],
                description=body.get("description", ""),
                environment_url=body.get("environment_url", ""),
                log_url=body.get("log_url", ""),
                target_url=body.get("log_url", ""),
                created_at=_now(),
                updated_at=_now(),
                creator=user(token.login, token.user_type),
            )
            items.append(s)
            return 201, s, {}
    return releases(state, method, path, body, token)


def releases(
    state: GitHubState, method: str, path: str, body: Any, token: Token
) -> tuple[int, Any, dict[str, str]]:
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/releases/tags/(.+)", path)
    if m and method == "GET":
        found = [r for r in state.releases.get(m[1], []) if r["tag_name"] == m[2]]
        return (200, found[0], {}) if found else (404, not_found(), {})
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/releases", path)
    if m and method == "POST":
        items = state.releases.setdefault(m[1], [])
        if any(r["tag_name"] == body["tag_name"] for r in items):
            return 422, validation_failed("Release", "tag_name", "already_exists"), {}
        rid = next(state.ids)
        r = openapi.example("POST", "/repos/{owner}/{repo}/releases", 201)
        tag = body["tag_name"]
        r.update(
            id=rid,
            node_id=f"RE_{rid}",
            url=f"{API}/repos/{m[1]}/releases/{rid}",
            html_url=f"https://github.com/{m[1]}/releases/tag/{tag}",
            tag_name=tag,
            name=body.get("name", tag),
            body=body.get("body", ""),
            draft=bool(body.get("draft")),
            prerelease=bool(body.get("prerelease")),
            created_at=_now(),
            published_at=_now(),
            author=user(token.login, token.user_type),
            assets=[],
        )
        items.append(r)
        if body.get("make_latest", "true") == "true":
            state.latest[m[1]] = tag
        return 201, r, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/git/matching-refs/(.+)", path)
    if m and method == "GET":
        refs = state.refs.get(m[1], {})
        found = sorted(r for r in refs if r.startswith(f"refs/{m[2]}"))
        return 200, [git_ref(m[1], r, refs[r]) for r in found], {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/git/refs", path)
    if m and method == "POST":
        refs = state.refs.setdefault(m[1], {})
        if body["ref"] in refs:
            return 422, {"message": "Reference already exists"}, {}
        refs[body["ref"]] = body["sha"]
        return 201, git_ref(m[1], body["ref"], body["sha"]), {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/git/refs/(.+)", path)
    if m and method == "PATCH":
        refs = state.refs.setdefault(m[1], {})
        if f"refs/{m[2]}" not in refs:
            return 422, {"message": "Reference does not exist"}, {}
        refs[f"refs/{m[2]}"] = body["sha"]  # `force`: a tag may move anywhere
        return 200, git_ref(m[1], f"refs/{m[2]}", body["sha"]), {}
    return 404, not_found(), {}


def git_ref(repo: str, ref: str, sha: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "node_id": f"REF_{zlib.crc32(ref.encode())}",
        "url": f"{API}/repos/{repo}/git/{ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{API}/repos/{repo}/git/commits/{sha}"},
    }


def validation_failed(resource: str, fieldname: str, code: str) -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "errors": [{"resource": resource, "code": code, "field": fieldname}],
        "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
    }


def _replace(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, list):
        return [_replace(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, old, new) for k, v in obj.items()}
    return obj


def not_found() -> dict[str, Any]:
    return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def not_accessible(doc: str = "") -> dict[str, Any]:
    """GitHub's answer to an installation token (GITHUB_TOKEN) without the permission, or on
    an endpoint only users may call."""
    return {
        "message": "Resource not accessible by integration",
        "documentation_url": f"https://docs.github.com/rest{'/' + doc if doc else ''}",
        "status": "403",
    }


def invalid(why: str) -> dict[str, Any]:
    return {
        "message": f"Invalid request.\n\n{why}",
        "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
        "status": "422",
    }


def no_ref(ref: str) -> dict[str, Any]:
    return {
        "message": f"No ref found for: {ref}",
        "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
        "status": "422",
    }


def user(login: str, kind: str = "User") -> dict[str, Any]:
    """A simple-user object as GitHub sends it, for `login`."""
    u = openapi.example("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")["user"]
    u.update({k: v.replace("octocat", login) for k, v in u.items() if isinstance(v, str)})
    u.update(id=zlib.crc32(login.encode()), node_id=f"U_{login}", gravatar_id="", type=kind)
    return dict(u)


def too_long() -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "IssueComment",
                "code": "custom",
                "field": "body",
                "message": "body is too long (maximum is 65536 characters)",
            }
        ],
        "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
    }


def paginate(
    items: list[Any], query: dict[str, list[str]], path: str, host: str
) -> tuple[int, Any, dict[str, str]]:
    per_page = min(int(query.get("per_page", ["30"])[0]), 100)
    page = int(query.get("page", ["1"])[0])
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    base = f"http://{host}{path}?per_page={per_page}"
    if page < last:
        links.append(f'<{base}&page={page + 1}>; rel="next"')
        links.append(f'<{base}&page={last}>; rel="last"')
    return 200, chunk, ({"Link": ", ".join(links)} if links else {})


class GitHubServer:
    def __init__(self, port: int = 0) -> None:
        self.state = GitHubState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> GitHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if exc[0] is None and self.state.violations:
            raise AssertionError(
                "GitHub's OpenAPI description disagrees with this exchange:\n"
                + "\n".join(dict.fromkeys(self.state.violations))
            )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--state-file", help="seed state (pulls, permissions) from JSON")
    args = p.parse_args()
    srv = GitHubServer(args.port)
    if args.state_file:
        with open(args.state_file) as f:
            seed = json.load(f)
        for pr in seed.get("pulls", []):
            srv.state.add_pull(pr["repo"], pr["number"], pr["head_sha"], fork=pr.get("fork", False))
        for entry in seed.get("permissions", []):
            srv.state.permissions[(entry["repo"], entry["user"])] = entry["permission"]
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(srv.httpd.server_address[1]))
    srv.httpd.serve_forever()


if __name__ == "__main__":
    main()

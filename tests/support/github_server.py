"""A local, stateful HTTP server speaking the GitHub REST shapes lepton-ci uses.

Real HTTP on loopback, so the real client (requests, retries, pagination) is exercised.
State: issues and their comments, pull requests, deployments and statuses, permissions.
Faults can be queued per method and path; every request is logged.
Run standalone for workflow tests: `python -m tests.support.github_server --port 0`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BODY_LIMIT = 65536


@dataclass
class Fault:
    method: str
    path: str  # regex on the path
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"message": "injected"})
    times: int = 1


@dataclass
class Token:
    login: str
    write: bool = True  # a fork PR's token is read-only
    user_type: str = "Bot"


class GitHubState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1000)
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.permissions: dict[tuple[str, str], str] = {}
        self.teams: dict[tuple[str, str], set[str]] = {}
        self.deployments: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[int, list[dict[str, Any]]] = {}
        self.issues: dict[str, list[dict[str, Any]]] = {}
        self.tokens: dict[str, Token] = {"test-token": Token("github-actions[bot]")}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []

    def add_pull(
        self,
        repo: str,
        number: int,
        head_sha: str,
        *,
        fork: bool = False,
        title: str = "A change",
        head_ref: str = "feature",
    ) -> None:
        head_repo = f"forker/{repo.split('/')[1]}" if fork else repo
        self.pulls[(repo, number)] = {
            "number": number,
            "title": title,
            "state": "open",
            "head": {
                "sha": head_sha,
                "ref": head_ref,
                "repo": {"full_name": head_repo, "fork": fork},
            },
            "base": {"sha": "0" * 40, "ref": "main", "repo": {"full_name": repo, "fork": False}},
        }

    def count(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p, _ in self.log if (method is None or m == method) and path in p)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def make_handler(state: GitHubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
            data = b"" if body is None else json.dumps(body).encode()
            state.log.append((self.command, self.path, status))  # before the client can read
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ratelimit-limit", "5000")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw else {}

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path.removeprefix("/api/v3"), parse_qs(url.query)
            body = self._body() if self.command in ("POST", "PATCH", "PUT") else {}
            with state.lock:
                for f in state.faults:
                    if f.times > 0 and f.method == self.command and re.search(f.path, path):
                        f.times -= 1
                        self._reply(f.status, f.body, f.headers)
                        return
            auth = self.headers.get("Authorization", "")
            token = state.tokens.get(auth.removeprefix("Bearer ").removeprefix("token "))
            if token is None:
                self._reply(401, {"message": "Bad credentials"})
                return
            if self.command != "GET" and not token.write:
                self._reply(403, {"message": "Resource not accessible by integration"})
                return
            with state.lock:
                status, payload, headers = route(
                    state, self.command, path, query, body, token, self.headers.get("Host", "")
                )
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
            c = {
                "id": next(state.ids),
                "body": body["body"],
                "created_at": _now(),
                "updated_at": _now(),
                "user": {"login": token.login, "type": token.user_type},
                "html_url": f"https://github.test/{m[1]}/pull/{m[2]}#c",
            }
            items.append(c)
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
        return 404, {"message": "Not Found"}, {}
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
            number = len(items) + 1
            issue = {
                "id": next(state.ids),
                "number": number,
                "title": body["title"],
                "body": body.get("body"),
                "state": "open",
                "state_reason": None,
                "labels": [{"name": n} for n in body.get("labels", [])],
                "user": {"login": token.login, "type": token.user_type},
                "html_url": f"https://github.test/{m[1]}/issues/{number}",
                "created_at": _now(),
                "updated_at": _now(),
            }
            items.append(issue)
            return 201, issue, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)", path)
    if m and method in ("GET", "PATCH"):
        issue = next((i for i in state.issues.get(m[1], []) if i["number"] == int(m[2])), None)
        if issue is None:
            return 404, {"message": "Not Found"}, {}
        if method == "PATCH":
            for k in ("title", "body", "state", "state_reason"):
                if k in body:
                    issue[k] = body[k]
            issue["updated_at"] = _now()
        return 200, issue, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls/(\d+)", path)
    if m and method == "GET":
        pr = state.pulls.get((m[1], int(m[2])))
        return (200, pr, {}) if pr else (404, {"message": "Not Found"}, {})
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/collaborators/([^/]+)/permission", path)
    if m and method == "GET":
        perm = state.permissions.get((m[1], m[2]), "read")
        return 200, {"permission": perm, "role_name": perm, "user": {"login": m[2]}}, {}
    m = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/memberships/([^/]+)", path)
    if m and method == "GET":
        if m[3] in state.teams.get((m[1], m[2]), set()):
            return 200, {"state": "active", "role": "member"}, {}
        return 404, {"message": "Not Found"}, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/deployments", path)
    if m:
        items = state.deployments.setdefault(m[1], [])
        if method == "GET":
            env = query.get("environment", [None])[0]
            return paginate(
                [d for d in items if env in (None, d["environment"])][::-1], query, path, host
            )
        if method == "POST":
            d = {
                "id": next(state.ids),
                "ref": body.get("ref"),
                "sha": body.get("sha", ""),
                "environment": body.get("environment", "production"),
                "description": body.get("description"),
                "payload": body.get("payload", {}),
                "created_at": _now(),
                "creator": {"login": token.login},
            }
            items.append(d)
            return 201, d, {}
    m = re.fullmatch(r"/repos/([^/]+/[^/]+)/deployments/(\d+)/statuses", path)
    if m:
        items = state.statuses.setdefault(int(m[2]), [])
        if method == "GET":
            return paginate(items[::-1], query, path, host)
        if method == "POST":
            s = {
                "id": next(state.ids),
                "state": body["state"],
                "description": body.get("description", ""),
                "environment_url": body.get("environment_url", ""),
                "log_url": body.get("log_url", ""),
                "created_at": _now(),
            }
            items.append(s)
            return 201, s, {}
    return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}


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

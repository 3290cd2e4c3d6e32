"""The GitHub REST client: one object, handed in, so tests can point it at a local server.

Timeouts on every call; bounded retries with backoff on 5xx, broken connections and rate
limits (honouring Retry-After and x-ratelimit-reset); Link-header pagination; errors that
say the fix. The token is masked in Actions and never appears in messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from lepton_ci.core import docs
from lepton_ci.core.errors import LeptonError

if TYPE_CHECKING:
    import requests

    from lepton_ci.core.gha import Runtime

DEFAULT_API = "https://api.github.com"
# Who posts with the workflow's GITHUB_TOKEN. An installation token (this one, or a GitHub
# App's) may not call GET /user: GitHub answers 403 "Resource not accessible by integration".
# Such tokens start `ghs_` (GitHub's token formats: ghp_ personal, gho_ OAuth, ghu_ user of an
# app, ghs_ server-to-server), so the workflow's token need not even ask.
ACTIONS_BOT = "github-actions[bot]"
INSTALLATION_PREFIX = "ghs_"
LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?")
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
TWO_PHASE_HINT = (
    "pull requests from forks get a read-only token: post the comment from a `workflow_run` "
    "job with `lepton-ci comment --from BUNDLE` ("
    + docs.page("explanation/trust-model", "fork-safe-pr-comments")
    + ")"
)


class GitHubError(LeptonError):
    """A GitHub API call failed for good."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        hint: str | None = None,
        ambiguous: bool = False,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        # A 5xx or a broken connection after the request was sent: a write may have landed.
        self.ambiguous = ambiguous


class GitHubClient:
    def __init__(
        self,
        token: str | None,
        *,
        base_url: str = DEFAULT_API,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        fork: bool = False,
    ) -> None:
        import requests  # only commands that talk to GitHub pay for it

        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "lepton-ci",
            }
        )
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self._token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock  # epoch seconds, to read x-ratelimit-reset; tests hand in their own
        self.fork = fork
        self.calls = 0
        self._login: tuple[str | None] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], rt: Runtime | None = None, **kw: Any) -> GitHubClient:
        token = env.get("LEPTON_GITHUB_TOKEN") or env.get("GITHUB_TOKEN") or None
        if token and rt is not None:
            rt.mask(token)
        return cls(token, base_url=env.get("GITHUB_API_URL") or DEFAULT_API, **kw)

    # -- transport ---------------------------------------------------------------------------

    def _wait_for(self, resp: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this response, or None if it is final."""
        status = resp.status_code
        if status >= 500:
            return float(min(2**attempt, 30))
        if status in (403, 429):
            h = resp.headers
            if h.get("retry-after"):
                try:
                    return float(h["retry-after"])
                except ValueError:
                    return 60.0
            if h.get("x-ratelimit-remaining") == "0" and h.get("x-ratelimit-reset"):
                reset = float(h["x-ratelimit-reset"])
                return max(0.0, reset - self.clock()) + 1.0
            if "secondary rate limit" in resp.text.lower():
                return float(60 * 2**attempt)
        return None

    def request(
        self, method: str, path: str, *, retry_unsafe: bool = True, **kw: Any
    ) -> requests.Response:
        """retry_unsafe=False: a 5xx or a broken connection is not retried here but raised as
        an ambiguous GitHubError, for a caller that first checks whether the write landed."""
        import requests

        url = path if path.startswith("http") else f"{self.base_url}{path}"
        attempt = 0
        while True:
            self.calls += 1
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt >= self.max_retries or not retry_unsafe:
                    raise GitHubError(
                        f"GitHub API unreachable at {self.base_url} after {attempt + 1} tries: "
                        f"{type(e).__name__}",
                        hint="check GITHUB_API_URL and the runner's network",
                        ambiguous=True,
                    ) from None
                self.sleep(min(2**attempt, 30))
                attempt += 1
                continue
            if resp.status_code < 400:
                return resp
            wait = self._wait_for(resp, attempt)
            if (
                wait is None
                or attempt >= self.max_retries
                or (resp.status_code >= 500 and not retry_unsafe)
            ):
                raise self._error(method, path, resp)
            if wait > self.max_wait:
                raise GitHubError(
                    f"GitHub API rate limit: {method} {path} may be retried in {wait:.0f}s, "
                    f"longer than lepton-ci waits ({self.max_wait:.0f}s)",
                    status=resp.status_code,
                    hint="run again later, or use a token with a higher rate limit",
                )
            self.sleep(wait)
            attempt += 1

    def _error(self, method: str, path: str, resp: requests.Response) -> GitHubError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        message = str(body.get("message", "")) if isinstance(body, dict) else resp.text[:200]
        if self._token:
            message = message.replace(self._token, "***")
        status = resp.status_code
        what = f"GitHub API {method} {path} failed: {status} {message}".rstrip()
        hint = None
        if status == 401:
            hint = "the token is missing or invalid: pass `github-token` / set GITHUB_TOKEN"
        elif status == 403 and "not accessible by integration" in message.lower():
            hint = TWO_PHASE_HINT if self.fork else _permission_hint(method, path)
        elif (
            status == 429
            or "rate limit" in message.lower()
            or (resp.headers.get("x-ratelimit-remaining") == "0")
        ):
            hint = "rate limited: run again later"
        elif status == 403:
            hint = (
                "the token is not allowed to do this: check the job's `permissions:` and, for "
                "a personal token, its scopes and the repository's access settings"
            )
        elif status == 404:
            hint = "check the repository and number; a token without access also sees 404"
        elif status == 422 and "too long" in resp.text.lower():  # said in `errors`, not `message`
            hint = "the body is over GitHub's limit"
        return GitHubError(what, status=status, hint=hint, ambiguous=status >= 500)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise self._not_api(method, path, resp.status_code, "a body that is not JSON") from None

    def object(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """A call whose answer must be one JSON object."""
        data = self.json(method, path, **kw)
        if not isinstance(data, dict):
            raise self._not_api(method, path, 200, f"JSON that is not an object ({_kind(data)})")
        return data

    def _not_api(self, method: str, path: str, status: int, what: str) -> GitHubError:
        return GitHubError(
            f"GitHub API {method} {path} answered {status} with {what}",
            status=status,
            hint="check GITHUB_API_URL: it must be the REST API (https://HOST/api/v3 on GitHub "
            "Enterprise Server), not the web site or a proxy page",
        )

    def create(
        self, path: str, body: Mapping[str, Any], *, landed: Callable[[], Any]
    ) -> dict[str, Any]:
        """POST a write that must not happen twice (a Deployment, a status).

        A 5xx or a lost connection may come after GitHub stored the write, so a blind retry
        could make two. Before each retry, `landed()` looks for the write (by a marker the
        caller put in it) and returns it, or None to retry."""
        attempt = 0
        while True:
            if attempt:
                found = landed()
                if found is not None:
                    return dict(found)
            try:
                return self.object("POST", path, json=body, retry_unsafe=False)
            except GitHubError as e:
                if not e.ambiguous or attempt >= self.max_retries:
                    raise
            self.sleep(min(2**attempt, 30))
            attempt += 1

    def paginate(self, path: str, per_page: int = 100) -> Iterator[Any]:
        sep = "&" if "?" in path else "?"
        url: str | None = f"{path}{sep}per_page={per_page}"
        while url:
            resp = self.request("GET", url)
            try:
                page = resp.json()
            except ValueError:
                page = None
            if not isinstance(page, list):
                raise self._not_api("GET", url, resp.status_code, "something that is not a list")
            yield from page
            m = _LINK_NEXT.search(resp.headers.get("link", ""))
            url = m[1] if m else None

    # -- the endpoints lepton-ci uses -----------------------------------------------------------

    def login(self) -> str | None:
        """The login this token acts as (GET /user, asked once), or None for an installation
        token: GitHub refuses it that endpoint with 403, and the answer names no app."""
        if self._login is None and (self._token or "").startswith(INSTALLATION_PREFIX):
            self._login = (None,)
        if self._login is None:
            try:
                me = self.object("GET", "/user")
            except GitHubError as e:
                if e.status != 403:
                    raise
                self._login = (None,)
            else:
                login = me.get("login")
                if not isinstance(login, str) or not login:
                    raise self._not_api("GET", "/user", 200, "a user without a login")
                self._login = (login,)
        return self._login[0]

    def pull(self, repo: str, number: int) -> dict[str, Any]:
        return self.object("GET", f"/repos/{repo}/pulls/{number}")

    def issue_comments(self, repo: str, number: int) -> Iterator[dict[str, Any]]:
        path = f"/repos/{repo}/issues/{number}/comments"
        for c in self.paginate(path):
            yield self._comment("GET", path, c)

    def create_comment(self, repo: str, number: int, body: str) -> dict[str, Any]:
        path = f"/repos/{repo}/issues/{number}/comments"
        return self._comment("POST", path, self.object("POST", path, json={"body": body}))

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        path = f"/repos/{repo}/issues/comments/{comment_id}"
        return self._comment("PATCH", path, self.object("PATCH", path, json={"body": body}))

    def _comment(self, method: str, path: str, c: Any) -> dict[str, Any]:
        """A comment as lepton-ci reads it: an object with an integer id and a text body."""
        if not (
            isinstance(c, dict)
            and isinstance(c.get("id"), int)
            and isinstance(c.get("body", ""), str)
        ):
            raise self._not_api(method, path, 200, "a comment without an id or a text body")
        return c

    def delete_comment(self, repo: str, comment_id: int) -> None:
        self.request("DELETE", f"/repos/{repo}/issues/comments/{comment_id}")

    def issues(self, repo: str, label: str, state: str = "open") -> Iterator[dict[str, Any]]:
        """Issues (not pull requests) carrying `label`."""
        from urllib.parse import quote

        items = self.paginate(f"/repos/{repo}/issues?state={state}&labels={quote(label)}")
        return (i for i in items if "pull_request" not in i)

    def create_issue(self, repo: str, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        payload = {"title": title, "body": body, "labels": labels}
        return self.object("POST", f"/repos/{repo}/issues", json=payload)

    def update_issue(self, repo: str, number: int, **fields: Any) -> dict[str, Any]:
        path = f"/repos/{repo}/issues/{number}"
        return self.object("PATCH", path, json=fields)


def _permission_hint(method: str, path: str) -> str:
    """The `permissions:` a workflow job needs for this call (GitHub's 403 says none)."""
    level = "read" if method == "GET" else "write"
    rest = re.sub(r"^(?:https?://[^/]+)?(?:/api/v3)?/repos/[^/]+/[^/]+/?", "", path)
    note = ""
    if rest.startswith("deployments"):
        need = f"deployments: {level}"
    elif rest.startswith("pulls"):
        need = f"pull-requests: {level}"
    elif re.match(r"issues/(\d+/comments|comments/)", rest):
        # The same endpoints serve a pull request's conversation and an issue's.
        need, note = f"pull-requests: {level}", f" (issues: {level} for an issue's comments)"
    elif rest.startswith("issues"):
        need = f"issues: {level}"
    else:
        return "the token lacks a permission this call needs: check the job's `permissions:`"
    return f"give the workflow job `permissions: {{{need}}}`{note}"


def _kind(data: Any) -> str:
    return "empty" if data is None else type(data).__name__

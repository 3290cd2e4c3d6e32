"""GitHub's own REST description (npm `@octokit/openapi`), used to keep the stand-in honest.

The local GitHub server builds its answers from the description's examples and checks every
request it receives and every response it gives against the description with openapi-core,
so neither lepton-ci's requests nor the stand-in's answers can drift from the real API.
.ci/setup unpacks the package into the test cache (LEPTON_TEST_CACHE, /var/cache/lepton-ci).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CACHE = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci")) / "npm"
DESCRIPTION = CACHE / "openapi" / "generated" / "api.github.com.json"
# The operations lepton-ci uses, and the ones the stand-in needs to reconcile writes.
PATHS = [
    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
    "/repos/{owner}/{repo}/collaborators/{username}/permission",
    "/orgs/{org}/teams/{team_slug}",
    "/orgs/{org}/teams/{team_slug}/memberships/{username}",
    "/repos/{owner}/{repo}/deployments",
    "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
    "/repos/{owner}/{repo}/issues",
    "/repos/{owner}/{repo}/issues/{issue_number}",
    "/user",
]


@cache
def description() -> dict[str, Any]:
    if not DESCRIPTION.is_file():
        raise FileNotFoundError(
            f"{DESCRIPTION} is missing: run `bash .ci/setup` (it npm-packs @octokit/openapi)"
        )
    full = json.loads(DESCRIPTION.read_text())
    # Only the paths in use: openapi-core then builds its validators in milliseconds.
    return {**full, "paths": {p: full["paths"][p] for p in PATHS}}


@cache
def _openapi() -> Any:
    from openapi_core import Config, OpenAPI

    # GitHub's description is checked upstream; validating it here takes ~1 minute.
    return OpenAPI.from_dict(description(), config=Config(spec_validator_cls=None))


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The described operation a concrete request path belongs to."""
    for template in PATHS:
        if _template(template).match(path):
            op = description()["paths"][template].get(method.lower())
            return (template, op) if op else None
    return None


def example(method: str, template: str, status: int = 200) -> Any:
    """A deep copy of GitHub's own example answer for an operation."""
    spec = description()
    resp = spec["paths"][template][method.lower()]["responses"][str(status)]
    ex = next(iter(resp["content"]["application/json"]["examples"].values()))
    if "$ref" in ex:
        ex = spec["components"]["examples"][ex["$ref"].rsplit("/", 1)[1]]
    return copy.deepcopy(ex["value"])


def violations(
    method: str,
    path: str,
    query: dict[str, list[str]],
    req_headers: dict[str, str],
    req_body: bytes,
    status: int,
    resp_headers: dict[str, str],
    resp_body: bytes,
) -> list[str]:
    """What in this exchange GitHub's description does not allow (empty: all is well)."""
    import requests
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    found = operation(method, path)
    if found is None:
        return [f"{method} {path}: no such operation in GitHub's REST API"]
    template, op = found
    url = f"https://api.github.com{path}"
    if query:
        url += "?" + urlencode({k: v[-1] for k, v in query.items()})
    req = requests.Request(method, url, headers=req_headers, data=req_body or None).prepare()
    out = []
    api = _openapi()
    try:
        api.validate_request(RequestsOpenAPIRequest(req))
    except Exception as e:
        out.append(f"request {method} {path}: {_why(e)}")
    if str(status) not in op["responses"]:
        # Statuses GitHub sends without describing them per operation (401, rate limits,
        # 5xx): the shape every GitHub error has.
        if status >= 400 and resp_body:
            body = json.loads(resp_body)
            if not isinstance(body, dict) or not isinstance(body.get("message"), str):
                out.append(f"response {status} to {method} {path}: not a GitHub error body")
        return out
    resp = requests.Response()
    resp.status_code = status
    resp._content = resp_body
    resp.headers.update(resp_headers)
    resp.request = req
    try:
        api.validate_response(RequestsOpenAPIRequest(req), RequestsOpenAPIResponse(resp))
    except Exception as e:
        out.append(f"response {status} to {method} {template}: {_why(e)}")
    return out


def _why(e: BaseException) -> str:
    """The exception chain and its schema errors, each said once, short enough to read."""
    seen: dict[str, None] = {}
    cur: BaseException | None = e
    while cur is not None:
        seen.setdefault(f"{type(cur).__name__}: {str(cur)[:200]}")
        for sub in getattr(cur, "schema_errors", ()) or ():
            where = ".".join(map(str, getattr(sub, "absolute_path", ())))
            seen.setdefault(f"at `{where}`: " + str(getattr(sub, "message", sub))[:200])
        cur = cur.__cause__
    return " <- ".join(list(seen)[:10])

"""A small Prometheus HTTP API client: instant queries, with a timeout and bounded retries.

An unreachable server and a refused query are told apart, because neither is a breach: the
watcher reports them and never reverts on them.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lepton_ci.core.errors import WatchError

if TYPE_CHECKING:
    import requests


class PrometheusUnreachable(WatchError):
    """Prometheus did not answer (connection refused, timeout, 5xx) after the retries."""


class QueryFailed(WatchError):
    """Prometheus answered, but refused or could not run the query."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        if not url.startswith(("http://", "https://")):
            raise WatchError(
                f"Prometheus URL {redact(url)!r} is not an http(s) URL",
                hint="set `watch.prometheus` (or LEPTON_PROMETHEUS_URL) to e.g. http://HOST:9090",
            )
        self.url = url.rstrip("/")
        try:
            self.password = urlsplit(self.url).password or ""
        except ValueError as e:
            raise WatchError(
                f"Prometheus URL {redact(self.url)!r} is malformed: {e}",
                hint="set `watch.prometheus` (or LEPTON_PROMETHEUS_URL) to e.g. http://HOST:9090",
            ) from None
        self.shown = redact(self.url)  # what messages, records and issues may say
        self.timeout = timeout
        self.retries = retries
        self.session = session or requests.Session()
        self.sleep = sleep
        # Why the last query found no Prometheus (None once it answers): the watcher asks the
        # next SLOs of the same evaluation nothing rather than wait out every one's retries.
        self.unreachable: PrometheusUnreachable | None = None

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """The instant vector (or scalar) `expr` evaluates to now; NaN (0/0, no data) is dropped.
        Raises QueryFailed when Prometheus refuses the query or it is not one number per
        series, PrometheusUnreachable when no Prometheus answers (or something else does).
        `at`: evaluated at that time (Unix seconds) instead of now."""
        try:
            return self._query(expr, at)
        except PrometheusUnreachable as e:
            self.unreachable = e
            raise

    def _query(self, expr: str, at: float | None = None) -> list[Sample]:
        import requests

        where = f"{self.url}/api/v1/query"
        for attempt in range(self.retries + 1):
            try:
                answer = self._get(where, expr, at)
            except _Deadline:
                problem = f"no complete answer within {self.timeout:g}s"
            except (requests.ConnectionError, requests.Timeout) as e:
                problem = type(e).__name__
            except _TooLarge:
                raise QueryFailed(
                    f"Prometheus's answer to {expr!r} is larger than {MAX_ANSWER >> 20} MB; "
                    "it was not read",
                    hint="aggregate the query to one number, e.g. with sum(...) or topk(...)",
                ) from None
            except (requests.RequestException, ValueError) as e:  # a malformed URL: no retry
                # (urllib3 raises a bare LocationParseError, a ValueError, for a long label)
                raise PrometheusUnreachable(
                    f"cannot ask Prometheus at {self.shown}: {type(e).__name__}: "
                    + (str(e).replace(self.password, "***") if self.password else str(e)),
                    hint="fix `watch.prometheus` (or LEPTON_PROMETHEUS_URL)",
                ) from None
            else:
                if answer.status < 500 or attempt == self.retries:
                    return self._parse(expr, answer)
                problem = f"HTTP {answer.status}"
            if attempt < self.retries:
                self.sleep(0.5 * 2**attempt)
        raise PrometheusUnreachable(
            f"Prometheus at {self.shown} did not answer after {self.retries + 1} tries: {problem}",
            hint="check `watch.prometheus` (or LEPTON_PROMETHEUS_URL) and that Prometheus runs",
        )

    def _get(self, where: str, expr: str, at: float | None = None) -> _Answer:
        """The answer, read whole within `timeout` (a deadline for the whole exchange, not a
        bound on each read: a server trickling a byte a second meets it) and up to MAX_ANSWER
        bytes. The exchange runs in a thread the deadline can leave behind; it stops itself at
        its next read."""
        deadline = time.monotonic() + self.timeout
        box: dict[str, Any] = {}
        done = threading.Event()

        def fetch() -> None:
            try:
                box["answer"] = self._fetch(where, expr, deadline, at)
            except BaseException as e:  # handed to the caller's thread, which raises it
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=fetch, daemon=True, name="prometheus-query").start()
        if not done.wait(max(0.0, deadline - time.monotonic()) + 0.05):
            raise _Deadline
        if "error" in box:
            raise box["error"]
        return box["answer"]  # type: ignore[no-any-return]

    def _fetch(self, where: str, expr: str, deadline: float, at: float | None = None) -> _Answer:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        resp = self.session.get(where, params=params, timeout=self.timeout, stream=True)
        with resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_ANSWER:
                raise _TooLarge
            body = bytearray()
            while chunk := resp.raw.read1(1 << 16, decode_content=True):
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise _TooLarge
                if time.monotonic() > deadline:
                    raise _Deadline
            return _Answer(resp.status_code, resp.headers.get("Content-Type", ""), bytes(body))

    def _parse(self, expr: str, answer: _Answer) -> list[Sample]:
        self.unreachable = None
        status = f"HTTP {answer.status}"
        try:
            body: Any = json.loads(answer.body)
        except ValueError:  # not JSON (UnicodeDecodeError included)
            raise self._not_prometheus(answer, _page(answer)) from None
        except RecursionError:  # nested past anything Prometheus writes
            raise self._not_prometheus(answer, "JSON nested too deeply") from None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            # Prometheus's every answer, success or refusal, is {"status": ..., ...}: a JSON
            # error from a proxy or another API is not Prometheus refusing the query.
            raise self._not_prometheus(answer, "JSON without Prometheus's `status`")
        if body["status"] == "success" and not 200 <= answer.status < 300:
            raise self._not_prometheus(answer, 'a "success" with an error status')
        if body["status"] == "error":
            error = str(body.get("error", ""))[:500]  # it lands in the history and the issue
            if answer.status >= 500:
                raise PrometheusUnreachable(
                    f"Prometheus at {self.shown}: {status} {error}".rstrip()
                )
            raise QueryFailed(
                f"Prometheus refused the query {expr!r}: {status} {error}".rstrip(),
                hint="fix the query in `watch.slos` (try it in Prometheus's expression browser)",
            )
        data = body.get("data")
        kind = data.get("resultType") if isinstance(data, dict) else None
        if kind in ("matrix", "string"):
            raise QueryFailed(
                f"the query {expr!r} returned a {kind}, not an instant vector or scalar",
                hint="aggregate it to one number, e.g. with sum(rate(...[5m]))",
            )
        try:
            samples = _samples(kind, data.get("result") if isinstance(data, dict) else None)
        except ValueError as e:
            raise self._not_prometheus(answer, f"a query answer with {e}") from None
        # NaN (0/0: no traffic yet) is no value; +Inf is one (a quantile past the last bucket).
        return [s for s in samples if not math.isnan(s.value)]

    def _not_prometheus(self, answer: _Answer, what: str) -> PrometheusUnreachable:
        return PrometheusUnreachable(
            f"{self.shown} answered with {what}, not Prometheus's JSON (HTTP {answer.status}): "
            "a login page or a proxy in front of it, or not Prometheus at all",
            hint="point `watch.prometheus` (or LEPTON_PROMETHEUS_URL) at Prometheus itself",
        )


MAX_ANSWER = 4 << 20  # bytes: an answer past this is a query to aggregate, not data to judge
# (Python objects of parsed JSON take up to 25 times its size: 4 MB of samples is ~100 MB.)

# A sample value as Prometheus writes it (a JSON string: Go's FormatFloat, or ±Inf, NaN). Not
# float(): it takes `True`, "1_000", " 5", "infinity" and any Unicode digit.
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN")


def _page(answer: _Answer) -> str:
    text = answer.body[:200].decode("utf-8", "replace").lstrip().lower()
    if "html" in answer.content_type or text.startswith(("<!doctype", "<html")):
        return f"an HTML page ({answer.content_type.split(';')[0] or 'no content type'})"
    return "something that is not JSON"


def _samples(kind: object, result: object) -> list[Sample]:
    """The samples of an instant vector or scalar in Prometheus's shape; ValueError saying
    what is off otherwise (a value `true` or "1_000" is no number: it would judge a breach)."""
    if kind == "scalar":
        result = [{"metric": {}, "value": result}]
    elif kind != "vector":
        raise ValueError(f"resultType {_short(kind)}")
    if not isinstance(result, list):
        raise ValueError(f"a result that is not a list: {_short(result)}")
    out = []
    for item in result:
        labels = item.get("metric") if isinstance(item, dict) else None
        pair = item.get("value") if isinstance(item, dict) else None
        if not (
            isinstance(labels, dict)
            and all(isinstance(v, str) for v in labels.values())
            and isinstance(pair, list)
            and len(pair) == 2
        ):
            raise ValueError(f"a sample not in Prometheus's shape: {_short(item)}")
        out.append(Sample(labels, _number(pair[1])))
    return out


def _number(value: object) -> float:
    if not isinstance(value, str) or not _FLOAT.fullmatch(value):
        raise ValueError(
            f"a sample value that is not a number as Prometheus writes it: {_short(value)}"
        )
    return float(value)


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


class _Deadline(Exception):
    pass


class _TooLarge(Exception):
    pass


def redact(url: str) -> str:
    """`url` without its user info (`http://user:secret@host` -> `http://***@host`), which
    messages, the release history and issues would otherwise carry."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"

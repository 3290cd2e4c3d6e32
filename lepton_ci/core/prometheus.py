"""A small Prometheus HTTP API client: instant queries, with a timeout and bounded retries.

An unreachable server and a refused query are told apart, because neither is a breach: the
watcher reports them and never reverts on them.
"""

from __future__ import annotations

import math
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

    def query(self, expr: str) -> list[Sample]:
        """The instant vector (or scalar) `expr` evaluates to now; NaN (0/0, no data) is dropped."""
        try:
            return self._query(expr)
        except PrometheusUnreachable as e:
            self.unreachable = e
            raise

    def _query(self, expr: str) -> list[Sample]:
        import requests

        where = f"{self.url}/api/v1/query"
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.get(where, params={"query": expr}, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                problem = type(e).__name__
            except (requests.RequestException, ValueError) as e:  # a malformed URL: no retry
                # (urllib3 raises a bare LocationParseError, a ValueError, for a long label)
                raise PrometheusUnreachable(
                    f"cannot ask Prometheus at {self.shown}: {type(e).__name__}: "
                    + (str(e).replace(self.password, "***") if self.password else str(e)),
                    hint="fix `watch.prometheus` (or LEPTON_PROMETHEUS_URL)",
                ) from None
            else:
                if resp.status_code < 500 or attempt == self.retries:
                    return self._parse(expr, resp)
                problem = f"HTTP {resp.status_code}"
            if attempt < self.retries:
                self.sleep(0.5 * 2**attempt)
        raise PrometheusUnreachable(
            f"Prometheus at {self.shown} did not answer after {self.retries + 1} tries: {problem}",
            hint="check `watch.prometheus` (or LEPTON_PROMETHEUS_URL) and that Prometheus runs",
        )

    def _parse(self, expr: str, resp: requests.Response) -> list[Sample]:
        self.unreachable = None
        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = str(body.get("error", "")) if isinstance(body, dict) else resp.text
            error = error[:500]  # it lands in the history, outputs and the issue (64 KiB max)
            status = f"HTTP {resp.status_code}"
            if resp.status_code >= 500:
                raise PrometheusUnreachable(
                    f"Prometheus at {self.shown}: {status} {error}".rstrip()
                )
            raise QueryFailed(
                f"Prometheus refused the query {expr!r}: {status} {error}".rstrip(),
                hint="fix the query in `watch.slos` (try it in Prometheus's expression browser)",
            )
        data = body.get("data")
        kind, result = (
            (data.get("resultType"), data.get("result")) if isinstance(data, dict) else (None, None)
        )
        if kind == "scalar":
            result = [{"metric": {}, "value": result}]
        elif kind != "vector" or not isinstance(result, list):
            raise QueryFailed(
                f"the query {expr!r} returned a {kind}, not an instant vector or scalar",
                hint="aggregate it to one number, e.g. with sum(rate(...[5m]))",
            )
        out = []
        for item in result:
            try:
                value = float(item["value"][1])
                labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                continue  # not a sample in Prometheus's shape: nothing to judge by
            if not math.isnan(value):  # +Inf is real (a quantile past the last bucket)
                out.append(Sample(labels, value))
        return out


def redact(url: str) -> str:
    """`url` without its user info (`http://user:secret@host` -> `http://***@host`), which
    messages, the release history and issues would otherwise carry."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{path}"

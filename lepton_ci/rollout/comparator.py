"""The shadow comparator: where the splitter mirrors every live request during a shadow rollout.

It answers nginx's mirror subrequest AT ONCE (204, nothing read from anyone): nginx finishes a
request only once its mirror subrequest has (on a kept-alive client connection it holds the
next request until then), so a comparator that waited for the candidate would put the
candidate's latency on the clients.
Off the request path, a few workers take the mirrored requests from a bounded queue, send each
to the candidate and to the serving revision (directly, not through the splitter), and compare
the two answers:

- both are `{"predictions": [...]}` of the same length: compared element by element (equal
  labels for classification, the absolute difference for regression);
- the serving revision failed or answered something else: not comparable, counted by why;
- the candidate failed, timed out or answered another shape: a candidate error, which counts
  as a disagreement.

Memory is bounded: the queue holds at most `queue_size` requests of at most `max_body` bytes;
a request mirrored while it is full is dropped (counted). So is one mirrored sooner than
1/`pace` s after the last one taken: each compared request is answered a second time by the
serving revision, and the pace bounds that extra load. Once `wanted` requests are compared,
mirrored requests are only answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "expect",
}
MAX_HEAD = 64 * 1024
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
_NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
EXAMPLES = 5


@dataclass(frozen=True)
class Mirrored:
    """One request as the splitter mirrored it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (refused, timed out)
    body: bytes = b""
    error: str = ""


@dataclass
class Tally:
    """What the comparison found so far (guarded by the comparator's lock)."""

    seen: int = 0
    compared: int = 0
    predictions: int = 0
    agreed: int = 0
    abs_error_sum: float = 0.0
    max_abs_error: float = 0.0
    candidate_errors: int = 0
    incomparable: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.predictions if self.predictions else None

    @property
    def mean_abs_error(self) -> float | None:
        return self.abs_error_sum / self.predictions if self.predictions else None


def predictions(answer: Answer) -> list[Any] | str:
    """The answer's predictions, or why there are none."""
    if answer.status is None:
        return f"no answer ({answer.error})"
    if not 200 <= answer.status < 300:
        return f"HTTP {answer.status}"
    try:
        data = json.loads(answer.body)
    except ValueError:
        return "not JSON"
    preds = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(preds, list):
        return "no `predictions` list"
    return preds


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _flat(x: Any) -> list[Any]:
    """A prediction as a flat list of leaves (a regression may answer a vector per input)."""
    if isinstance(x, list):
        return [leaf for item in x for leaf in _flat(item)]
    return [x]


@dataclass(frozen=True)
class Outcome:
    """How one request's two answers compared."""

    judged: bool  # False: not comparable (the serving answer is unusable)
    why: str = ""  # not comparable, or the candidate's error
    predictions: int = 0
    agreed: int = 0
    abs_errors: tuple[float, ...] = ()
    candidate_error: bool = False


def compare(serving: Answer, candidate: Answer, *, regression: bool) -> Outcome:
    """Compare two answers to one request. Pure: the tests feed it known answers."""
    want = predictions(serving)
    if isinstance(want, str):
        return Outcome(judged=False, why=f"serving: {want}")
    if not want:
        return Outcome(judged=False, why="serving: empty `predictions`")
    got = predictions(candidate)
    if isinstance(got, str) or len(got) != len(want):
        why = got if isinstance(got, str) else f"{len(got)} predictions for {len(want)}"
        return Outcome(
            judged=True, why=f"candidate: {why}", predictions=len(want), candidate_error=True
        )
    if not regression:
        agreed = sum(1 for a, b in zip(want, got, strict=True) if _same(a, b))
        return Outcome(judged=True, predictions=len(want), agreed=agreed)
    errors: list[float] = []
    for a, b in zip(want, got, strict=True):
        fa, fb = _flat(a), _flat(b)
        na, nb = [_number(v) for v in fa], [_number(v) for v in fb]
        if any(v is None for v in na):
            return Outcome(judged=False, why="serving: a prediction that is not a number")
        if len(fa) != len(fb) or any(v is None for v in nb):
            return Outcome(
                judged=True,
                why="candidate: a prediction of another shape or not a number",
                predictions=len(want),
                candidate_error=True,
            )
        errors.append(
            sum(abs(x - y) for x, y in zip(na, nb, strict=True)) / len(na)  # type: ignore[operator]
        )
    return Outcome(judged=True, predictions=len(want), abs_errors=tuple(errors))


def _same(a: Any, b: Any) -> bool:
    """The same label as JSON has it: Python's `==` holds `true == 1 == 1.0`, but a client
    that reads the label `1` does not read `true` or `1.0` alike."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


Send = Callable[[str, Mirrored, float], Answer]


def send(base_url: str, req: Mirrored, timeout: float) -> Answer:
    """`req` to `base_url` (http://host:port), with the client's headers but hop-by-hop ones."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        headers = {k: v for k, v in req.headers if k.lower() not in HOP_BY_HOP}
        conn.request(req.method, req.target, body=req.body or None, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.read(MAX_ANSWER + 1)[:MAX_ANSWER])
    except (OSError, http.client.HTTPException) as e:
        return Answer(None, error=type(e).__name__ if not str(e) else str(e)[:120])
    finally:
        conn.close()


MAX_ANSWER = 8 << 20


class Comparator:
    """The mirror's receiver and the comparison behind it; `start()`, `wait()`, `stop()`."""

    def __init__(
        self,
        candidate: str,
        serving: str,
        *,
        wanted: int,
        regression: bool = False,
        queue_size: int = 64,
        workers: int = 2,
        call_timeout: float = 10.0,
        max_body: int = 1 << 20,
        pace: float | None = 50.0,
        send: Send = send,
    ) -> None:
        self.candidate, self.serving = candidate.rstrip("/"), serving.rstrip("/")
        self.wanted, self.regression = wanted, regression
        self.queue: queue.Queue[Mirrored | None] = queue.Queue(maxsize=queue_size)
        self.n_workers, self.call_timeout, self.max_body = workers, call_timeout, max_body
        self._send = send
        # At most `pace` requests a second are taken for comparison: each one the serving
        # revision answers a second time, so its extra load stays bounded however busy it is.
        self._gap = 1.0 / pace if pace else 0.0
        self._next = 0.0
        self.tally = Tally()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._enough = False  # set under the lock once `wanted` requests are queued or compared
        self._queued = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._threads: list[threading.Thread] = []
        self.port = 0

    # -- the mirror's side: answer at once ---------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (a free port by default) and start the workers; returns "host:port"."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._client, host, port, backlog=1024)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except OSError as e:
                failed.append(e)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        t = threading.Thread(target=serve, name="shadow-mirror", daemon=True)
        t.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        self._threads.append(t)
        for i in range(self.n_workers):
            w = threading.Thread(target=self._work, name=f"shadow-compare-{i}", daemon=True)
            w.start()
            self._threads.append(w)
        return f"{host}:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                req, keep = await self._read(reader)
                if req is None:
                    if keep:  # a body over max_body: refused, the connection closed
                        writer.write(_TOO_LARGE)
                        await writer.drain()
                    return
                self._offer(req)  # a put that never waits: the queue drops when full
                writer.write(_NO_CONTENT if keep else _NO_CONTENT_CLOSE)
                await writer.drain()  # answered before anything is compared
                if not keep:
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[Mirrored | None, bool]:
        """One request; (None, False) at the end of the connection, (None, True) if too big."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None, False
        if len(head) > MAX_HEAD:
            return None, False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = [*lines[0].split(" "), "", "", ""][:3]
        headers = []
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
        h = {k.lower(): v for k, v in headers}
        conn = h.get("connection", "").lower()
        keep = (version == "HTTP/1.1" and conn != "close") or conn == "keep-alive"
        if h.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                if len(body) + size > self.max_body:
                    return None, True
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            data = bytes(body)
        else:
            length = int(h.get("content-length") or 0)
            if length > self.max_body:
                return None, True
            data = await reader.readexactly(length) if length else b""
        return Mirrored(method, target, tuple(headers), data), keep

    def _offer(self, req: Mirrored) -> None:
        with self._lock:
            self.tally.seen += 1
            if self._enough:
                return
            now = time.monotonic()
            if now < self._next:
                self.tally.dropped += 1
                return
            try:
                self.queue.put_nowait(req)
            except queue.Full:
                self.tally.dropped += 1
                return
            self._next = now + self._gap
            self._queued += 1

    # -- off the request path: ask both, compare -----------------------------------------------

    def _work(self) -> None:
        while True:
            req = self.queue.get()
            if req is None:
                return
            if self._done.is_set():
                continue
            serving = self._send(self.serving, req, self.call_timeout)
            candidate = self._send(self.candidate, req, self.call_timeout)
            self._count(req, compare(serving, candidate, regression=self.regression))

    def _count(self, req: Mirrored, o: Outcome) -> None:
        with self._lock:
            t = self.tally
            self._queued -= 1
            if not o.judged:
                t.incomparable[o.why] = t.incomparable.get(o.why, 0) + 1
            elif t.compared < self.wanted:
                t.compared += 1
                t.predictions += o.predictions
                if o.candidate_error:
                    t.candidate_errors += 1
                elif self.regression:
                    t.abs_error_sum += sum(o.abs_errors)
                    t.max_abs_error = max([t.max_abs_error, *o.abs_errors])
                else:
                    t.agreed += o.agreed
                disagreed = o.candidate_error or (not self.regression and o.agreed < o.predictions)
                if disagreed and len(t.examples) < EXAMPLES:
                    what = o.why or f"{o.predictions - o.agreed} of {o.predictions} differ"
                    # The path only: a query string may carry a client's key or token
                    # (`?api_key=`), and the examples go to git, the PR comment and the site.
                    path = req.target.split("?", 1)[0].split("#", 1)[0][:200]
                    query = " (query not kept)" if "?" in req.target else ""
                    t.examples.append(f"{req.method} {path}{query}: {what}")
            # Enough queued to reach `wanted` if none of it turns out not comparable: stop
            # queueing, so the serving revision is asked no more than it must be.
            self._enough = t.compared + self._queued >= self.wanted
            if t.compared >= self.wanted:
                self._done.set()

    def wait(self, timeout: float, poll: Callable[[], None] | None = None) -> bool:
        """Until `wanted` requests are compared (True) or `timeout` seconds (False); `poll` is
        called about once a second (a progress line, a check that the candidate still runs)."""
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._done.wait(min(1.0, left))
            if poll is not None and not self._done.is_set():
                poll()
        return True

    def snapshot(self) -> Tally:
        with self._lock:
            t = self.tally
            return Tally(
                t.seen,
                t.compared,
                t.predictions,
                t.agreed,
                t.abs_error_sum,
                t.max_abs_error,
                t.candidate_errors,
                dict(t.incomparable),
                t.dropped,
                list(t.examples),
            )

    def stop(self) -> None:
        with self._lock:
            self._enough = True  # nothing more is queued
        self._done.set()
        with contextlib.suppress(queue.Empty):
            while True:  # what is left is not compared: the workers only need the stop marks
                self.queue.get_nowait()
        for _ in range(self.n_workers):
            with contextlib.suppress(queue.Full):
                self.queue.put(None, timeout=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for t in self._threads:
            t.join(timeout=self.call_timeout + 5)
        self._threads.clear()

"""A shadow rollout adds no latency to client requests: wrk's p95 through the splitter with and
without the mirror. Target: p95 with the shadow within 5% of p95 without it.

The splitter is lepton-ci's own (real nginx, rollout/splitter.py) on loopback, in front of a
model server that takes DELAY per answer (a stand-in for inference; threaded, so it is not the
bottleneck; in a process of its own, as a pod is, apart from the comparator's). wrk (Debian's)
keeps CONNECTIONS keep-alive connections busy for SECONDS per run.
Scenarios, interleaved run by run so the machine's other load falls on all of them alike:
- no shadow: the splitter alone; measured twice, so the ratio of the two shows how much two
  identical runs differ on this machine at this moment (the noise floor of the other ratios);
- shadow: every request mirrored to lepton-ci's comparator, which answers the mirror at once
  and, off the request path, asks the candidate and the serving model and compares; here it
  compares all along (its `requests` set beyond reach), the worst case for the serving side;
- shadow, slow candidate: the same with a candidate that takes SLOW per answer;
- mirror straight to the slow candidate: what the comparator avoids. nginx finishes a request
  only once its mirror subrequest is answered (with keep-alive towards clients it holds the
  connection's next request until then; the splitter now closes client connections after each
  answer, which makes this cost smaller, not nil); printed to show the bench sees latency when
  it is there. The mirror's own answer times come from nginx's log.

    python bench/shadow_latency.py [SECONDS] [RUNS]   (defaults 3 and 7)
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lepton_ci.rollout.comparator import Comparator, Tally  # noqa: E402
from lepton_ci.rollout.splitter import Splitter, SplitterError  # noqa: E402
from tests.support.services import PortTaken, on_free_port  # noqa: E402

CONNECTIONS = 4
DELAY = 0.01
SLOW = 0.2
NO_SHADOW = "no shadow"
NO_SHADOW_AGAIN = "no shadow, again (the noise floor)"
SHADOW = "shadow"
SHADOW_SLOW = "shadow, slow candidate"
DIRECT_SLOW = "mirror straight to the slow candidate"

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"instances": [[0, 1, 2, 3]]}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("p95_us %d\\n", latency:percentile(95)))
  io.write(string.format("mean_us %d\\n", latency.mean))
  io.write(string.format("requests %d\\n", summary.requests))
  local e = summary.errors
  io.write(string.format("errors %d\\n", e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk(url: str, seconds: float, connections: int, script: Path) -> dict[str, float]:
    proc = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    found = dict(re.findall(r"^(p95_us|mean_us|requests|errors) (\d+)$", proc.stdout, re.MULTILINE))
    return {
        "p95_ms": int(found["p95_us"]) / 1000,
        "mean_ms": int(found["mean_us"]) / 1000,
        "requests": int(found["requests"]),
        "errors": int(found["errors"]),
    }


class Server:
    """A model server in a process of its own (`tests/support/answers.py`), as a pod is: the
    measuring process (wrk's results, the comparator) shares no interpreter with it."""

    def __init__(self, delay: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.answers", str(delay)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def mirror_times(log: Path) -> list[float]:
    """How long each mirror subrequest took, in ms, from the splitter's own access log
    (`mirror STATUS UPSTREAM REQUEST_TIME MSEC` lines): how soon the mirror was answered."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "mirror":
            out.append(float(parts[3]) * 1000)
    return out


def measure(
    seconds: float = 5.0,
    runs: int = 3,
    connections: int = CONNECTIONS,
    delay: float = DELAY,
    slow: float = SLOW,
) -> dict[str, dict[str, float]]:
    """Per scenario: the median p95 (ms) over `runs`, requests, errors, and for the shadows
    what the comparator compared and dropped."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        stable, candidate, slow_candidate = Server(delay), Server(delay), Server(slow)
        # A comparator per run, stopped with it: a backlog left in its queue must not go on
        # asking the serving model during the next scenario's run.
        compared_against = {SHADOW: candidate.url, SHADOW_SLOW: slow_candidate.url}
        mirrors = {NO_SHADOW: None, NO_SHADOW_AGAIN: None, DIRECT_SLOW: slow_candidate.address}
        tallies: dict[str, list[Tally]] = {n: [] for n in compared_against}

        def start(port: int) -> Splitter:
            s = Splitter(tmp / "state", "bench-shadow", port)
            try:
                s.configure(stable.address)
            except SplitterError as e:
                if "Address already in use" in e.message:
                    raise PortTaken(e.message) from e
                raise
            return s

        splitter = on_free_port(start)
        url = f"http://127.0.0.1:{splitter.listen}/predict"
        order = [NO_SHADOW, SHADOW, SHADOW_SLOW, NO_SHADOW_AGAIN, DIRECT_SLOW]
        samples: dict[str, list[dict[str, float]]] = {n: [] for n in order}
        mirror_ms: dict[str, list[float]] = {n: [] for n in order}
        try:
            wrk(url, 1, connections, script)  # warm-up: connections, nginx's worker
            for _ in range(runs):
                for name in order:
                    comp = None
                    if name in compared_against:
                        comp = Comparator(compared_against[name], stable.url, wanted=10**9)
                        mirrors[name] = comp.start()
                    try:
                        splitter.configure(stable.address, mirror=mirrors[name])
                        splitter.reset_counts()
                        samples[name].append(wrk(url, seconds, connections, script))
                        mirror_ms[name] += mirror_times(splitter.access_log)
                    finally:
                        if comp is not None:
                            splitter.configure(stable.address)
                            comp.stop()
                            tallies[name].append(comp.snapshot())
        finally:
            splitter.stop()
            for server in (stable, candidate, slow_candidate):
                server.stop()
        out: dict[str, dict[str, float]] = {}
        for name in order:
            rows = samples[name]
            out[name] = {
                "p95_ms": statistics.median(r["p95_ms"] for r in rows),
                "mean_ms": statistics.median(r["mean_ms"] for r in rows),
                "requests": sum(r["requests"] for r in rows),
                "errors": sum(r["errors"] for r in rows),
            }
            if mirror_ms[name]:
                out[name]["mirror_p95_ms"] = statistics.quantiles(mirror_ms[name], n=20)[-1]
            if name in tallies:
                ts = tallies[name]
                out[name].update(
                    compared=sum(t.compared for t in ts),
                    dropped=sum(t.dropped for t in ts),
                    seen=sum(t.seen for t in ts),
                )
        return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    res = measure(seconds, runs)
    base = res[NO_SHADOW]["p95_ms"]
    print(
        f"wrk -t1 -c{CONNECTIONS} through the splitter on loopback, model server {DELAY * 1000:g} "
        f"ms per answer, slow candidate {SLOW * 1000:g} ms; {runs} runs of {seconds:g} s, "
        "median p95"
    )
    for name, r in res.items():
        extra = ""
        if "mirror_p95_ms" in r:
            extra += f"  (mirror answered in p95 {r['mirror_p95_ms']:.1f} ms)"
        if "compared" in r:
            extra += (
                f"  (comparator: {int(r['seen'])} mirrored, {int(r['compared'])} compared, "
                f"{int(r['dropped'])} not taken: its pace or a full queue)"
            )
        print(
            f"{name:<38} p95 {r['p95_ms']:8.2f} ms  x{r['p95_ms'] / base:5.2f}  "
            f"mean {r['mean_ms']:7.2f} ms  x{r['mean_ms'] / res[NO_SHADOW]['mean_ms']:5.2f}  "
            f"{int(r['requests']):>7} requests, {int(r['errors'])} errors{extra}"
        )
    ratio = res[SHADOW]["p95_ms"] / base
    slow_ratio = res[SHADOW_SLOW]["p95_ms"] / base
    floor = res[NO_SHADOW_AGAIN]["p95_ms"] / base
    print(f"p95 without shadow, again / without: {floor:.3f} (two identical runs: the noise)")
    print(f"p95 with shadow / without: {ratio:.3f} (target <= 1.05)")
    print(f"p95 with shadow of a slow candidate / without: {slow_ratio:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()

"""The traffic splitter against real nginx: splits, graceful reloads, mirror, counters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lepton_ci.rollout.splitter import Splitter, SplitterError, _alive
from tests.support.backends import Backend, backends
from tests.support.services import PortTaken, on_free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def splitter(tmp_path: Path) -> Iterator[Splitter]:
    made: list[Splitter] = []
    yield_one = _Factory(tmp_path, made)
    yield yield_one  # type: ignore[misc]
    for s in made:
        s.stop()


class _Factory:
    """`splitter(stable, ...)`: a Splitter on a free port, configured; stopped at teardown."""

    def __init__(self, tmp_path: Path, made: list[Splitter]) -> None:
        self.tmp_path, self.made = tmp_path, made

    def __call__(self, stable: str, **kw: object) -> Splitter:
        def start(port: int) -> Splitter:
            # a space and a `;` in the path: nginx must read each as part of one path
            s = Splitter(self.tmp_path / "state dir;x", "digits-staging", port)
            try:
                s.configure(stable, **kw)  # type: ignore[arg-type]
            except SplitterError as e:
                if "Address already in use" in e.message:
                    raise PortTaken(e.message) from e
                raise
            self.made.append(s)
            return s

        return on_free_port(start)


def url(s: Splitter) -> str:
    return f"http://127.0.0.1:{s.listen}/predict"


def counted(s: Splitter, total: int) -> dict[str, int]:
    """The counts once `total` lines are in: nginx logs a request just after it answered."""
    deadline = time.monotonic() + 5
    while sum((counts := s.counts()).values()) < total and time.monotonic() < deadline:
        time.sleep(0.02)
    return counts


def tags(s: Splitter, n: int) -> str:
    http = requests.Session()
    return "".join(http.post(url(s), data=b"{}", timeout=5).text for _ in range(n))


def test_weights_split_every_tenth_request_and_counters_match_the_backends(splitter) -> None:
    with backends("A", "B") as (a, b):
        s = splitter(a.addr)
        assert s.running()
        assert tags(s, 5) == "AAAAA"
        s.configure(a.addr, b.addr, 10)
        s.reset_counts()
        a.hits = b.hits = 0
        got = tags(s, 100)
        assert got.count("B") == 10  # smooth weighted round robin: exactly 10 of 100
        assert counted(s, 100) == {"stable": 90, "canary": 10}
        assert (a.hits, b.hits) == (90, 10)
        s.configure(a.addr, b.addr, 100)
        assert tags(s, 10) == "B" * 10
        s.configure(b.addr)  # the candidate is the stable track now
        assert tags(s, 3) == "BBB"
        assert s.split() == ({"stable": b.addr, "canary": None, "mirror": None}, 0)


def test_counts_are_incremental_and_shared_by_another_splitter_object(splitter) -> None:
    with backends("A", "B") as (a, b):
        s = splitter(a.addr, canary=b.addr, percent=50)
        s.reset_counts()
        tags(s, 10)
        assert counted(s, 10) == {"stable": 5, "canary": 5}
        tags(s, 4)
        other = Splitter(s.prefix.parent, s.name, s.listen)  # e.g. the next lepton-ci command
        assert counted(other, 14) == {"stable": 7, "canary": 7}
        other.reset_counts()
        assert s.counts() == {"stable": 0, "canary": 0}
        tags(s, 2)
        assert counted(s, 2) == {"stable": 1, "canary": 1}


def test_errors_are_counted_per_track(splitter) -> None:
    with backends("A") as (a,), backends("B", status=500) as (b,):
        s = splitter(a.addr, canary=b.addr, percent=50)
        s.reset_counts()
        codes = [requests.get(url(s), timeout=5).status_code for _ in range(10)]
        assert sorted(codes) == [200] * 5 + [500] * 5
        counted(s, 10)
        assert s.errors() == {"canary": 5}


def test_reloads_under_load_drop_nothing_and_leave_old_backends_idle(splitter) -> None:
    """A client sends requests without pause while the split changes 12 times and the stable
    backend is replaced: no request fails, and once `configure` has returned, a backend it no
    longer names receives nothing (it can be removed at once)."""
    with backends("A", "B", "C") as (a, b, c):
        s = splitter(a.addr)
        failures: list[str] = []
        sent = [0]
        stop = threading.Event()

        def client() -> None:
            http = requests.Session()
            while not stop.is_set():
                try:
                    r = http.post(url(s), data=b"x" * 100, timeout=5)
                    if r.status_code != 200:
                        failures.append(str(r.status_code))
                except requests.RequestException as e:
                    failures.append(repr(e))
                sent[0] += 1

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for percent in (10, 25, 50, 75, 100, 0, 10, 50, 100):
                s.configure(a.addr, b.addr, percent)
                time.sleep(0.05)
            s.configure(b.addr)
            before = a.hits
            time.sleep(0.3)
            assert a.hits == before  # the retired stable gets nothing after the reload
            s.configure(b.addr, c.addr, 50)
            s.configure(c.addr)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert sent[0] > 100
        assert failures == []


def test_mirror_copies_every_request_and_its_answers_never_reach_the_client(splitter) -> None:
    with backends("A", "M") as (a, m):
        s = splitter(a.addr, mirror=m.addr)
        s.reset_counts()
        assert tags(s, 20) == "A" * 20
        # a mirror's line is logged once its answer is in
        assert counted(s, 40) == {"stable": 20, "canary": 0, "mirror": 20}
        assert m.hits == 20
        s.configure(a.addr)  # the mirror off again
        tags(s, 5)
        assert m.hits == 20


def test_a_mirror_that_is_down_costs_the_client_nothing(splitter) -> None:
    with backends("A", "M") as (a, m):
        s = splitter(a.addr, mirror=m.addr)
        m.close()
        assert tags(s, 5) == "AAAAA"


def test_stop_and_start_again(splitter) -> None:
    with backends("A") as (a,):
        s = splitter(a.addr)
        s.stop()
        assert not s.running()
        with pytest.raises(requests.ConnectionError):
            requests.get(url(s), timeout=2)
        s.configure(a.addr)
        assert s.running()
        assert tags(s, 1) == "A"


def test_a_stale_pid_file_starts_a_new_nginx(splitter) -> None:
    """nginx stopped behind lepton-ci's back (a reboot): the next configure starts it."""
    with backends("A") as (a,):
        s = splitter(a.addr)
        pid = int(s.pid_file.read_text())
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30  # a graceful quit under a loaded CI machine
        while s.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        s.pid_file.write_text(f"{pid}\n")  # nginx removes it on exit; a crash would not
        assert not s.running()
        s.configure(a.addr)
        assert tags(s, 1) == "A"


def test_bad_backends_and_percentages_are_refused_before_anything_runs(tmp_path: Path) -> None:
    s = Splitter(tmp_path, "x", 1)
    for kw, needle in (
        ({"stable": "localhost:80"}, "not 127.0.0.1:PORT"),
        ({"stable": "127.0.0.1:80", "canary": "127.0.0.1:81", "percent": 101}, "0-100"),
        ({"stable": "127.0.0.1:80", "percent": 10}, "canary not given"),
        ({"stable": "127.0.0.1:80", "canary": "127.0.0.1:80", "percent": 10}, "both"),
    ):
        with pytest.raises(SplitterError, match=needle):
            s.configure(**kw)  # type: ignore[arg-type]
    assert not s.running()


def test_a_state_dir_with_a_dollar_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """nginx reads `$host` in an access_log path as a variable, even quoted: the log went to
    a path the client's Host header chose, and the counters read nothing."""
    s = Splitter(tmp_path / "repo$host", "x", 1)
    with pytest.raises(SplitterError, match=r"`\$`.*variable") as e:
        s.configure("127.0.0.1:80")
    assert e.value.hint and "without `$`" in e.value.hint
    assert not (tmp_path / "repo$host").exists()


def test_a_port_already_taken_says_so(splitter, tmp_path: Path) -> None:
    with backends("A") as (a,):
        s = splitter(a.addr)
        other = Splitter(tmp_path / "other", "y", s.listen)
        with pytest.raises(SplitterError, match="Address already in use") as e:
            other.configure(a.addr)
        assert "host_port" in str(e.value)
        # nginx tries to bind five times and says so each time: the message says it once
        assert e.value.message.count("Address already in use") == 1


def test_missing_nginx_names_the_package(tmp_path: Path) -> None:
    s = Splitter(tmp_path, "x", 1, nginx=str(tmp_path / "no-nginx"))
    with pytest.raises(SplitterError, match="nginx is not installed") as e:
        s.configure("127.0.0.1:80")
    assert "apt-get install nginx" in str(e.value)


def test_a_backend_replaced_under_a_keepalive_client(splitter) -> None:
    """The stable backend goes away right after the split moved off it: nothing fails."""
    with backends("A") as (a,):
        b = Backend("B").start()
        try:
            s = splitter(b.addr)
            http = requests.Session()
            assert http.get(url(s), timeout=5).text == "B"
            s.configure(a.addr)
            b.close()
            assert [http.get(url(s), timeout=5).text for _ in range(5)] == ["A"] * 5
        finally:
            b.close()


def test_a_stale_pid_file_naming_another_nginx_leaves_that_nginx_alone(
    splitter, tmp_path: Path
) -> None:
    """After a reboot the pid in a stale file can be another environment's nginx: neither
    `stop` nor `configure` may signal it (stop used to quit it, configure to reload it)."""
    with backends("A", "B") as (a, b):
        other = splitter(a.addr)
        s = Splitter(other.prefix.parent, "digits-prod", other.listen, timeout=5)
        s.prefix.mkdir(parents=True)
        s.pid_file.write_text(other.pid_file.read_text())
        assert not s.running()
        s.stop()
        assert other.running() and tags(other, 1) == "A"

        def start(port: int) -> Splitter:
            mine = Splitter(other.prefix.parent, "digits-prod", port, timeout=5)
            mine.prefix.mkdir(parents=True, exist_ok=True)
            mine.pid_file.write_text(other.pid_file.read_text())
            try:
                mine.configure(b.addr)
            except SplitterError as e:
                if "Address already in use" in e.message:
                    raise PortTaken(e.message) from e
                raise
            return mine

        mine = on_free_port(start)
        try:
            assert tags(mine, 1) == "B" and tags(other, 1) == "A"
        finally:
            mine.stop()
        assert other.running()


def test_workers_left_by_a_killed_master_are_replaced_and_stopped(splitter) -> None:
    """nginx's master SIGKILLed (OOM killer): its worker goes on holding the port with the
    old split, unseen. The next configure must take the port back, and stop must leave no
    nginx of this environment behind."""
    with backends("A", "B") as (a, b):
        s = splitter(a.addr)
        master = int(s.pid_file.read_text())
        workers = s._workers()
        assert workers
        os.kill(master, signal.SIGKILL)
        time.sleep(0.3)
        assert not s.running()
        s.configure(b.addr)
        assert tags(s, 3) == "BBB"
        assert not any(_alive(w) for w in workers)  # gone, or a zombie no one reaps here
        os.kill(int(s.pid_file.read_text()), signal.SIGKILL)
        time.sleep(0.3)
        s.stop()
        assert s._orphans() == set()
        with pytest.raises(requests.ConnectionError):
            requests.get(url(s), timeout=2)


def test_a_canary_that_dies_at_100_percent_falls_back_to_stable(splitter, tmp_path: Path) -> None:
    """At the last step the canary takes every request; if it crashes there, the serving
    revision (still running until promotion) answers instead of every client getting a 502
    for the rest of the interval, and the counters show who answered."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "predict").write_text("B")
    with backends("A") as (a,):
        port = free_port()
        canary = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=tmp_path / "www",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            s = splitter(a.addr, canary=f"127.0.0.1:{port}", percent=100)
            assert [requests.get(url(s), timeout=5).text for _ in range(3)] == ["B"] * 3
        finally:
            canary.kill()
            canary.wait()
        s.reset_counts()
        assert [requests.get(url(s), timeout=5).text for _ in range(4)] == ["A"] * 4
        assert counted(s, 4) == {"stable": 4, "canary": 0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_a_client_cannot_forge_the_counters(splitter) -> None:
    """The counters parse nginx's access log: what a client controls (path, query, headers,
    an encoded or raw newline, quotes) must never make a line read as a canary answer."""
    forged = "\ncanary 200 127.0.0.1:1 0.001 1\n"
    with backends("A", "B") as (a, b):
        s = splitter(a.addr, canary=b.addr, percent=0)
        s.reset_counts()
        raw = [
            b"GET /predict%0Acanary%20500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b'GET /"canary 500 HTTP/1.1\r\nHost: x\r\nUser-Agent: "canary\r\n\r\n',
            b"GET /predict?q=\ncanary 500 HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for req in raw:
            with socket.create_connection(("127.0.0.1", s.listen), timeout=5) as sock:
                sock.sendall(req)
                sock.recv(65536)
        http = requests.Session()
        for _ in range(3):
            http.get(
                url(s) + "?" + requests.utils.quote(forged),
                headers={"User-Agent": forged.strip(), "Referer": "canary 200"},
                timeout=5,
            )
        time.sleep(0.5)
        counts = s.counts()
        assert counts["canary"] == 0 and s.errors().get("canary", 0) == 0
        assert 3 <= counts["stable"] <= 6, counts  # the good requests, and any nginx answered


def test_the_splitter_listens_on_loopback_only(splitter) -> None:
    """Every listening socket on the environment's port (IPv4 and IPv6) is 127.0.0.1."""
    with backends("A") as (a,):
        s = splitter(a.addr)
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, port = local.split(":")
                if state == "0A" and int(port, 16) == s.listen:
                    found.append(addr)
        assert found == ["0100007F"]

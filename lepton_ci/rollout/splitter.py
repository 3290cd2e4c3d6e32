"""A traffic splitter in front of the podman pods: one real nginx process per environment.

It holds the environment's address (`127.0.0.1:host_port`) while revisions change behind it:
the pods publish on other loopback ports, and the splitter's weighted upstream sends each
request to the stable or the canary pod (nginx's smooth weighted round robin: 10% is every
tenth request, not a coin toss), optionally copying every request to a mirror whose answers
are thrown away. A new split is a graceful reload: the old workers finish what they hold, the
new ones take every new connection, so no request is dropped; `configure` returns once no
worker of the previous configuration is left, so a backend it no longer names gets nothing.

Everything lives under one prefix in the deploy state dir: the generated nginx.conf, the pid
file, the access and error logs, the temp dirs. Requests answered per track are counted from
nginx's own access log (each line names the track of the upstream that answered), read
incrementally from the offset the last count stopped at.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lepton_ci.core import atomic
from lepton_ci.core.errors import LeptonError

# Requests with this Host reach the splitter's own status server, never a pod: it answers
# with the configuration generation, so a reload can be waited for without a second port.
CONTROL_HOST = "lepton-splitter.invalid"
TRACKS = ("stable", "canary")
_BACKEND = re.compile(r"^127\.0\.0\.1:(\d{1,5})$")


class SplitterError(LeptonError):
    """The traffic splitter (nginx) could not be started, reconfigured or stopped."""


class Splitter:
    """One environment's nginx: `configure` starts it or reloads it gracefully."""

    def __init__(
        self,
        state_dir: Path,
        name: str,
        listen: int,
        *,
        nginx: str = "nginx",
        timeout: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.prefix = state_dir / f"{name}.splitter"
        self.name, self.listen = name, listen
        self.nginx, self.timeout, self.sleep = nginx, timeout, sleep
        self.conf = self.prefix / "nginx.conf"
        self.pid_file = self.prefix / "nginx.pid"
        self.access_log = self.prefix / "logs" / "access.log"
        self.error_log = self.prefix / "logs" / "error.log"
        self._state_file = self.prefix / "state.json"

    # -- the process ---------------------------------------------------------------------

    def configure(
        self,
        stable: str,
        canary: str | None = None,
        percent: int = 0,
        mirror: str | None = None,
    ) -> None:
        """Send `percent` of the requests to `canary` and the rest to `stable` (backends as
        `127.0.0.1:PORT`), copying every request to `mirror` if given. Starts nginx if it is
        not running; otherwise reloads it and returns once only the new split is served."""
        for what, addr in (("stable", stable), ("canary", canary), ("mirror", mirror)):
            if addr is not None and not _BACKEND.match(addr):
                raise SplitterError(
                    f"splitter {self.name}: {what} backend {addr!r} is not 127.0.0.1:PORT"
                )
        if not 0 <= percent <= 100:
            raise SplitterError(f"splitter {self.name}: percent {percent} is not within 0-100")
        if canary is not None and canary == stable:
            raise SplitterError(f"splitter {self.name}: stable and canary are both {stable}")
        if canary is None and percent:
            raise SplitterError(f"splitter {self.name}: {percent}% for a canary not given")
        if "$" in str(self.prefix):
            raise SplitterError(
                f"splitter {self.name}: its folder {self.prefix} has a `$`, which nginx reads "
                "as a variable in a log path (the access log would follow the client's Host "
                "header, and the counters would read nothing)",
                hint="keep the repository (and so .lepton/deploy) under a path without `$`",
            )
        state = self._state()
        generation = int(state.get("generation", 0)) + 1
        for d in ("logs", "temp"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        text = self._render(stable, canary, percent, mirror, generation)
        candidate = self.prefix / "nginx.conf.new"
        candidate.write_text(text)
        self._run("-t", conf=candidate, what="check the new configuration")
        old_workers = self._workers() if self.running() else None
        if old_workers is None:
            # Workers a killed master left (OOM killer, SIGKILL) still hold the port with an
            # old split: they go first, or the new nginx cannot bind and nothing recovers.
            self._stop_orphans()
        candidate.replace(self.conf)
        state.update(
            generation=generation,
            backends={"stable": stable, "canary": canary, "mirror": mirror},
            percent=percent if canary else 0,
            listen=self.listen,
        )
        self._save(state)
        if old_workers is None:
            self._run(what="start")
        else:
            self._run("-s", "reload", what="reload")
        self._await_generation(generation)
        if old_workers:
            self._await_exit(old_workers)

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and self._is_ours(pid)

    def stop(self) -> None:
        """Stop nginx gracefully (in-flight requests finish), then remove nothing else: the
        logs stay for whoever reads the counts or the errors afterwards."""
        pid = self._pid()
        if pid is None or not self._is_ours(pid):
            self._stop_orphans()
            return
        _signal(pid, signal.SIGQUIT)
        deadline = time.monotonic() + self.timeout
        while self._is_ours(pid):
            if time.monotonic() > deadline:
                _signal(pid, signal.SIGTERM)
                self.sleep(0.5)
                if self._is_ours(pid):
                    raise SplitterError(
                        f"splitter {self.name} (nginx pid {pid}) did not stop within "
                        f"{self.timeout:.0f} s",
                        hint=f"kill {pid} by hand; its logs are in {self.error_log.parent}",
                    )
                break
            self.sleep(0.05)
        self._stop_orphans()

    def _is_ours(self, pid: int) -> bool:
        """`pid` is this environment's nginx master: after a reboot a stale pid file can
        name another environment's nginx (or anything else), which is never signalled."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False
        ours = cmdline.startswith(b"nginx") and f" -p {self.prefix}/ ".encode() in cmdline
        return ours and _alive(pid)  # an exited master no one reaped yet serves nothing

    def _orphans(self) -> set[int]:
        """nginx processes of this prefix whose master is gone (found by the logs they hold
        open: a worker's command line does not name its prefix)."""
        master = self._pid() if self.running() else None
        ours = {str(self.access_log), str(self.error_log)}
        found = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if not (proc / "cmdline").read_bytes().startswith(b"nginx: "):
                    continue
                if master is not None and int(proc.name) in (master, *_children(master)):
                    continue
                if any(str(fd.readlink()) in ours for fd in (proc / "fd").iterdir()):
                    found.add(int(proc.name))
            except OSError:
                continue
        return found

    def _stop_orphans(self) -> None:
        orphans = self._orphans()
        for pid in orphans:
            _signal(pid, signal.SIGQUIT)
        deadline = time.monotonic() + self.timeout
        while any(_alive(p) for p in orphans):
            if time.monotonic() > deadline:
                for pid in orphans:
                    _signal(pid, signal.SIGKILL)
                break
            self.sleep(0.05)

    def split(self) -> tuple[dict[str, str | None], int]:
        """The backends and the canary's percent of the configuration in effect."""
        state = self._state()
        return dict(state.get("backends") or {}), int(state.get("percent", 0))

    # -- counters --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests answered per track (`stable`, `canary`, `mirror`) since the last reset,
        read from nginx's access log past the offset the previous count stopped at."""
        return dict(self._tally()["counts"].items())

    def errors(self) -> dict[str, int]:
        """Of those, answers with a 5xx status (or no answer) per track."""
        return dict(self._tally()["errors"].items())

    def reset_counts(self) -> None:
        # nginx appends with O_APPEND, so truncating under it is safe: its next line lands at
        # the new end. A line written between the last read and the truncation is dropped,
        # which is what a reset means.
        if self.access_log.exists():
            os.truncate(self.access_log, 0)
        state = self._state()
        state["tally"] = {"offset": 0, "counts": dict.fromkeys(TRACKS, 0), "errors": {}}
        self._save(state)

    def _tally(self) -> dict[str, dict[str, int]]:
        state = self._state()
        tally = state.get("tally") or {"offset": 0, "counts": dict.fromkeys(TRACKS, 0)}
        counts: dict[str, int] = dict.fromkeys(TRACKS, 0) | dict(tally.get("counts") or {})
        errors: dict[str, int] = dict(tally.get("errors") or {})
        offset = int(tally.get("offset", 0))
        if self.access_log.exists():
            with self.access_log.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < offset:  # truncated by a reset in another process
                    offset = 0
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
            for line in chunk[:end].decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) < 2 or parts[0] not in (*TRACKS, "mirror"):
                    continue
                counts[parts[0]] = counts.get(parts[0], 0) + 1
                if not parts[1].isdigit() or int(parts[1]) >= 500:
                    errors[parts[0]] = errors.get(parts[0], 0) + 1
            offset += end
        state["tally"] = {"offset": offset, "counts": counts, "errors": errors}
        self._save(state)
        return {"counts": counts, "errors": errors}

    # -- internals -------------------------------------------------------------------------

    def _render(
        self, stable: str, canary: str | None, percent: int, mirror: str | None, generation: int
    ) -> str:
        servers = []
        if percent < 100 or canary is None:
            servers.append(f"server {stable} weight={100 - percent if canary else 1};")
        else:
            # At 100% stable gets nothing, but it still runs until promotion: a canary that
            # crashes at the last step hands its requests to it rather than 502 to everyone.
            servers.append(f"server {stable} backup;")
        if canary is not None and percent > 0:
            servers.append(f"server {canary} weight={percent};")
        named = {"stable": stable} | ({"canary": canary} if canary is not None else {})
        tracks = " ".join(f'"~(^|[ ,]){re.escape(a)}$" {t};' for t, a in named.items())
        # `user root` only where the master runs as root (CI): the workers then write the temp
        # dirs under the prefix; as another user nginx runs the workers as that user anyway.
        user = "user root;\n" if os.geteuid() == 0 else ""
        mirror_conf = ""
        if mirror is not None:
            mirror_conf = """
        mirror /.lepton-mirror;
        mirror_request_body on;"""
        mirror_location = ""
        if mirror is not None:
            mirror_location = f"""
        location = /.lepton-mirror {{
            internal;
            log_subrequest on;
            access_log {_q(self.access_log)} lepton_mirror;
            proxy_pass http://lepton_mirror$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_set_header Host $host;
        }}"""
        mirror_upstream = ""
        if mirror is not None:
            mirror_upstream = f"upstream lepton_mirror {{ server {mirror}; keepalive 16; }}\n"
        return f"""# Written by lepton-ci for {self.name}: generation {generation}. Do not edit.
{user}worker_processes 1;
worker_shutdown_timeout 15s;
daemon on;
pid {_q(self.pid_file)};
error_log {_q(self.error_log)} warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {_q(self.prefix / "temp" / "client_body")};
    proxy_temp_path {_q(self.prefix / "temp" / "proxy")};
    fastcgi_temp_path {_q(self.prefix / "temp" / "fastcgi")};
    uwsgi_temp_path {_q(self.prefix / "temp" / "uwsgi")};
    scgi_temp_path {_q(self.prefix / "temp" / "scgi")};
    default_type application/octet-stream;
    client_max_body_size 64m;
    # No keep-alive towards clients: at a reload the old workers close their idle keep-alive
    # connections, and a client that sent its next request on one just then sees it fail
    # (seen under load: "Remote end closed connection without response"). A new loopback
    # connection per request costs microseconds; towards the pods keep-alive stays, where
    # nginx retries a request that met a closed cached connection by itself.
    keepalive_timeout 0;
    # The last upstream address is the one that answered (a retried request lists two).
    map $upstream_addr $lepton_track {{
        default "-";
        {tracks}
    }}
    log_format lepton '$lepton_track $status $upstream_addr $request_time $msec';
    log_format lepton_mirror 'mirror $status $upstream_addr $request_time $msec';
{mirror_upstream}    upstream lepton_backends {{
        {" ".join(servers)}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.listen};
        access_log {_q(self.access_log)} lepton;
        location / {{{mirror_conf}
            proxy_pass http://lepton_backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 2;
        }}{mirror_location}
    }}
    server {{
        listen 127.0.0.1:{self.listen};
        server_name {CONTROL_HOST};
        access_log off;
        location / {{ return 200 "{generation}"; }}
    }}
}}
"""

    def _run(self, *args: str, conf: Path | None = None, what: str) -> None:
        argv = [
            self.nginx,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(conf or self.conf),
            "-e",
            str(self.error_log),
            *args,
        ]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                start_new_session=True,  # a Ctrl-C of lepton-ci must not stop the splitter
            )
        except FileNotFoundError:
            raise SplitterError(
                "nginx is not installed: podman deploys put it in front of the pods as the "
                "traffic splitter",
                hint="apt-get install nginx",
            ) from None
        except subprocess.TimeoutExpired:
            raise SplitterError(
                f"splitter {self.name}: `nginx {' '.join(args) or 'start'}` timed out after "
                f"{self.timeout:.0f} s"
            ) from None
        if proc.returncode != 0:
            # nginx retries a bind five times and says so each time: each line once
            err = "\n".join(dict.fromkeys(proc.stderr.strip().splitlines()))[-800:]
            hint = None
            if "Address already in use" in err:
                hint = (
                    f"something else listens on 127.0.0.1:{self.listen}: stop it (`ss -ltnp "
                    f"sport = :{self.listen}`), or change the environment's `host_port`"
                )
            raise SplitterError(f"splitter {self.name}: could not {what}: {err}", hint=hint)

    def _await_generation(self, generation: int) -> None:
        deadline = time.monotonic() + self.timeout
        seen = "no answer"
        while True:
            seen = self._generation()
            if seen == str(generation):
                return
            if time.monotonic() > deadline:
                tail = _tail(self.error_log)
                raise SplitterError(
                    f"splitter {self.name}: configuration {generation} not in effect after "
                    f"{self.timeout:.0f} s (it answers {seen}); nginx says: {tail}"
                )
            self.sleep(0.02)

    def _generation(self) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.listen}/", headers={"Host": CONTROL_HOST}
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                return str(resp.read().decode().strip())
        except (OSError, urllib.error.URLError) as e:
            return f"no answer ({e})"

    def _workers(self) -> set[int]:
        pid = self._pid()
        return set() if pid is None else set(_children(pid))

    def _await_exit(self, workers: set[int]) -> None:
        """The previous configuration's workers finish their requests and exit (bounded by
        nginx's worker_shutdown_timeout); until then they may still reach the old backends."""
        deadline = time.monotonic() + self.timeout
        while any(_alive(p) for p in workers):
            if time.monotonic() > deadline:
                raise SplitterError(
                    f"splitter {self.name}: the previous configuration's workers still run "
                    f"after {self.timeout:.0f} s"
                )
            self.sleep(0.02)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self._state_file, json.dumps(state, indent=1))


def _q(path: Path) -> str:
    """A path as an nginx string: quoted, so a state dir with a space or `;` stays one."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no error log)"

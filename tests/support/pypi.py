"""A real local package index (pypiserver) to publish releases to and install them from.

Uploads need no password (`-a . -P .`), an existing file is refused as PyPI refuses it, and a
project the index lacks is a 404, never a redirect to PyPI (`--disable-fallback`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.services import check_port, on_free_port

START_TIMEOUT = 30


@contextmanager
def package_index(packages: Path) -> Iterator[str]:
    """pypiserver serving (and receiving uploads into) `packages`; yields its base URL
    (`URL/` takes uploads, `URL/simple/` is the simple API)."""
    packages.mkdir(parents=True, exist_ok=True)
    log = packages.parent / f"{packages.name}-pypiserver.log"
    server = Path(sys.executable).with_name("pypi-server")

    def start(port: int) -> tuple[subprocess.Popen[bytes], str]:
        with log.open("wb") as out:
            args = ["-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".", "--disable-fallback"]
            proc = subprocess.Popen(
                [str(server), "run", *args, str(packages)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = log.read_text(errors="replace")
                check_port(text)
                raise RuntimeError(f"pypiserver exited {proc.returncode}:\n{text[-2000:]}")
            try:
                if requests.get(f"{url}/", timeout=2).status_code == 200:
                    return proc, url
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        proc.kill()
        raise RuntimeError(f"pypiserver did not answer on {url}:\n{log.read_text()[-2000:]}")

    proc, url = on_free_port(start)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

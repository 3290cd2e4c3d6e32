"""The GPU a run could use: NVIDIA's driver and CUDA versions, as nvidia-smi reports them.

nvidia-smi takes tens to hundreds of milliseconds, so its answer is kept in the interpreter
memo under the binary's stat and the kernel module's version line: a new driver changes one.
A machine without nvidia-smi has no accelerator; one where it fails (tools installed, no GPU
or no driver, as in many containers) has none either.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lepton_ci.core.record import Accelerator
from lepton_ci.run.interpreter import Memo

TIMEOUT_S = 10.0
DRIVER_VERSION = Path("/proc/driver/nvidia/version")
_CUDA = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


def detect(env: Mapping[str, str], memo: Memo) -> Accelerator | None:
    smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if smi is None:
        return None
    try:
        module = DRIVER_VERSION.read_text(errors="replace")
    except OSError:
        module = ""
    key = f"nvidia-smi\0{os.path.realpath(smi)}\0{module}"
    cached: Any = memo.get(key)
    if cached is None:
        since = time.time_ns()
        found = ask(smi, env)
        cached = {"found": found.model_dump(mode="json") if found else None}
        memo.put(key, [os.path.realpath(smi)], cached, since)
    return Accelerator.model_validate(cached["found"]) if cached.get("found") else None


def _run(argv: list[str], env: Mapping[str, str]) -> str | None:
    try:
        proc = subprocess.run(
            argv,
            env=dict(env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def ask(smi: str, env: Mapping[str, str]) -> Accelerator | None:
    """One line per GPU, `driver, name`; the CUDA version is only in the plain report's header."""
    listing = _run([smi, "--query-gpu=driver_version,name", "--format=csv,noheader"], env)
    if listing is None:
        return None
    rows = [line.split(",", 1) for line in listing.splitlines() if line.strip()]
    if not rows:
        return None
    header = _run([smi], env) or ""
    cuda = _CUDA.search(header)
    return Accelerator(
        driver=rows[0][0].strip(),
        cuda=cuda[1] if cuda else None,
        devices=[r[1].strip() for r in rows if len(r) > 1 and r[1].strip()],
    )

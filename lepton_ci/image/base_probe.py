"""What a base image runs: its Python version and the wheel platform its C library accepts.

The dependency layer is installed for the image's interpreter, not the runner's, so these are
read from the base image itself: the architecture from its config, the Python version from the
`python3` link in `usr/local/bin` or `usr/bin` (the order of PATH) or else the one standard
library under `usr/local/lib/python3.X/` or `usr/lib/python3.X/`, the C library from the dpkg
status of libc6 (Debian, Ubuntu), the `libc-2.XX.so` file names (older glibc), or the apk
database's musl (Alpine). Reading the layers costs one pass over their bytes, so the answer is
kept in the run-cache directory under the base manifest's digest: read once per base.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from lepton_ci.core import atomic
from lepton_ci.core.config import ImageConfig
from lepton_ci.core.errors import LeptonError
from lepton_ci.core.oci_client import OCIClient

PROBE_VERSION = 1  # bump when what is read changes, so cached answers are read again
# OCI architecture (and variant) -> the machine name in wheel platform tags
WHEEL_ARCH = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm/v7": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
_STDLIB = re.compile(r"(usr/local|usr)/lib/python(3\.\d+)/os\.py")
_LIBC_FILE = re.compile(r"(?:usr/)?lib(?:64)?/(?:[^/]+/)?libc-(2\.\d+)\.so")
_MUSL_LOADER = re.compile(r"lib/ld-musl-[^/]+\.so\.1")


class BaseProbeError(LeptonError):
    """The base image's Python or platform could not be read from its layers."""


@dataclass(frozen=True)
class Target:
    """The interpreter and platform wheels are chosen for."""

    python: str  # "3.11"
    platform: str  # "manylinux_2_36_x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def describe(self) -> str:
        return f"CPython {self.python} on {self.platform}"

    def platforms(self) -> list[str]:
        """Every platform tag this one accepts, newest first: pip takes `--platform` as is
        (it does not widen manylinux_2_36 to the manylinux_2_28 wheels glibc 2.36 runs)."""
        m = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_(\w+)", self.platform)
        if m is None:
            return [self.platform]
        kind, major, minor, arch = m[1], int(m[2]), int(m[3]), m[4]
        if kind == "musllinux":
            return [f"musllinux_{major}_{v}_{arch}" for v in range(minor, -1, -1)]
        tags = []
        for v in range(minor, 4 if arch in ("x86_64", "i686") else 16, -1):
            tags.append(f"manylinux_{major}_{v}_{arch}")
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(v)
            if legacy and major == 2:
                tags.append(f"{legacy}_{arch}")
        return tags


@dataclass
class Facts:
    """What the layers say, later layers over earlier ones."""

    links: dict[str, str] = field(default_factory=dict)  # usr/bin/python3 -> python3.11
    stdlib: dict[str, list[str]] = field(default_factory=dict)  # usr -> ["3.11"]
    glibc: str | None = None
    musl: str | None = None  # a version, or "" when only the loader was seen

    def python(self) -> str | None:
        for prefix in ("usr/local", "usr"):  # PATH order: /usr/local/bin first
            link = self.links.get(f"{prefix}/bin/python3")
            m = re.search(r"python(3\.\d+)$", link or "")
            if m:
                return m[1]
            versions = sorted(set(self.stdlib.get(prefix, [])))
            if len(versions) == 1:
                return versions[0]
            if len(versions) > 1:
                raise BaseProbeError(
                    f"the base image has several Pythons under /{prefix}/lib "
                    f"({', '.join(versions)}) and no python3 link saying which one runs",
                    hint='set `image.python: "3.X"` in lepton.yaml',
                )
        return None

    def read(self, layer: IO[bytes]) -> None:
        with tarfile.open(fileobj=layer, mode="r|*") as tar:
            for member in tar:
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.lstrip("/")
                if name in ("usr/bin/python3", "usr/local/bin/python3"):
                    link = member.linkname if member.issym() or member.islnk() else ""
                    self.links[name] = link
                elif m := _STDLIB.fullmatch(name):
                    self.stdlib.setdefault(m[1], []).append(m[2])
                elif m := _LIBC_FILE.fullmatch(name):
                    self.glibc = _newer(self.glibc, m[1])
                elif _MUSL_LOADER.fullmatch(name) and self.musl is None:
                    self.musl = ""
                elif name == "var/lib/dpkg/status" and member.isfile():
                    self.glibc = _package_version(_member_text(tar, member), "libc6") or self.glibc
                elif name == "lib/apk/db/installed" and member.isfile():
                    self.musl = _apk_version(_member_text(tar, member), "musl") or self.musl


def _member_text(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    f = tar.extractfile(member)
    return f.read().decode("utf-8", "replace") if f is not None else ""


def _newer(a: str | None, b: str) -> str:
    return b if a is None or _vt(b) > _vt(a) else a


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _package_version(status: str, package: str) -> str | None:
    """glibc's MAJOR.MINOR from dpkg's status stanza of `package` (`2.36-9+deb12u4` -> 2.36)."""
    for stanza in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            m = re.search(r"^Version: (?:\d+:)?(\d+\.\d+)", stanza, re.M)
            if m and re.search(r"^Status: .* installed$", stanza, re.M):
                return m[1]
    return None


def _apk_version(db: str, package: str) -> str | None:
    for stanza in db.split("\n\n"):
        if re.search(rf"^P:{re.escape(package)}$", stanza, re.M):
            m = re.search(r"^V:(\d+\.\d+)", stanza, re.M)
            if m:
                return m[1]
    return None


def target(
    image: ImageConfig,
    client: OCIClient,
    repository: str,
    manifest: dict[str, Any],
    manifest_digest: str,
    config: dict[str, Any],
    cache_dir: Path | None,
) -> Target:
    """The Python version and wheel platform of the base image: `image.python` and
    `image.platform` when given, else read from the base (once per base digest)."""
    if image.python and image.platform:
        return Target(image.python, image.platform)
    cache = cache_dir / "base-probe.json" if cache_dir else None
    known = _load(cache)
    key = f"{PROBE_VERSION}:{manifest_digest}"
    try:
        facts = Facts(**known[key]) if key in known else None
    except TypeError:  # written by another version: read the base again
        facts = None
    if facts is None:
        facts = Facts()
        for desc in manifest.get("layers", []):
            try:
                client.read_blob(repository, desc["digest"], facts.read)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise BaseProbeError(
                    f"cannot read layer {desc['digest'][:19]} of the base image "
                    f"({desc.get('mediaType', '?')}): {e}",
                    hint='set `image.python: "3.X"` and `image.platform: manylinux_2_XX_ARCH` '
                    "in lepton.yaml",
                ) from None
        if cache is not None:
            known[key] = asdict(facts)
            atomic.write_text(cache, json.dumps(known, sort_keys=True))
    python = image.python or facts.python()
    if python is None:
        raise BaseProbeError(
            f"no Python found in the base image {image.base} (no python3 in /usr/bin or "
            "/usr/local/bin, no standard library under /usr/lib/python3.X)",
            hint='use a base image with Python 3, or set `image.python: "3.X"` if it is there',
        )
    return Target(python, image.platform or _platform(image, config, facts))


def _platform(image: ImageConfig, config: dict[str, Any], facts: Facts) -> str:
    arch = str(config.get("architecture") or "amd64")
    if config.get("variant") and arch == "arm":
        arch = f"arm/{config['variant']}"
    machine = WHEEL_ARCH.get(arch)
    fix = "set `image.platform` (e.g. manylinux_2_36_x86_64) in lepton.yaml"
    if machine is None:
        raise BaseProbeError(
            f"the base image {image.base} is for {arch}, for which no wheel platform is known",
            hint=fix,
        )
    if facts.glibc:
        major, minor = facts.glibc.split(".")
        return f"manylinux_{major}_{minor}_{machine}"
    if facts.musl:
        major, minor = facts.musl.split(".")
        return f"musllinux_{major}_{minor}_{machine}"
    raise BaseProbeError(
        f"cannot tell which C library the base image {image.base} has (no dpkg status of "
        "libc6, no libc-2.XX.so, no apk record of musl)",
        hint=fix,
    )


def _load(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}

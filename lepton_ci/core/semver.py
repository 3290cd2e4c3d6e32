"""Semantic versions, with `v` prefix as GTO writes them, and bumps."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from lepton_ci.core.errors import RegistryError

# [0-9], never \d: in a str pattern \d (and int()) take any Unicode digit, so `1\u0661.0.0` was
# read as v11.0.0. Versions, like SemVer and GTO, are ASCII.
_SEMVER = (
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
SEMVER_RE = re.compile(rf"v?{_SEMVER}", re.ASCII)
SEMVER_PATTERN = _SEMVER

Bump = Literal["major", "minor", "patch"]


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        return _parse(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> Version:
        m = SEMVER_RE.fullmatch(text.strip())
        if not m:
            raise RegistryError(
                f"`{text}` is not a semantic version",
                hint="write it as MAJOR.MINOR.PATCH, e.g. v1.2.3",
            )
        return cls(int(m[1]), int(m[2]), int(m[3]), m[4] or "", m[5] or "")

    @classmethod
    def is_valid(cls, text: str) -> bool:
        return bool(SEMVER_RE.fullmatch(text))

    def __str__(self) -> str:
        s = f"v{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            s += f"-{self.pre}"
        if self.build:
            s += f"+{self.build}"
        return s

    @property
    def plain(self) -> str:
        return str(self)[1:]

    def sort_key(self) -> SortKey:
        # Kept on the instance (not a field: equality and hash ignore it); hashing a Version
        # for a cache lookup costs more than the key itself.
        try:
            return self.__dict__["_sort_key"]  # type: ignore[no-any-return]
        except KeyError:
            key = self.__dict__["_sort_key"] = _sort_key(self)
            return key

    def bump(self, part: Bump) -> Version:
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        return Version(self.major, self.minor, self.patch + (0 if self.pre else 1))


@functools.lru_cache(maxsize=65536)
def _parse(text: str) -> Version:
    # Versions are immutable, so a registry read that meets each tag twice parses it once.
    return Version._parse_uncached(text)


SortKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def _sort_key(v: Version) -> SortKey:
    # A release sorts above its pre-releases; numeric identifiers below alphanumeric ones.
    pre: tuple[tuple[int, int | str], ...] = tuple(
        (0, int(p)) if p.isascii() and p.isdigit() else (1, p) for p in v.pre.split(".") if v.pre
    )
    return (v.major, v.minor, v.patch, 0 if v.pre else 1, pre)


FIRST = Version(0, 1, 0)

_BREAKING = re.compile(r"^[a-z]+(\([^)]*\))?!:|^BREAKING[ -]CHANGE:", re.MULTILINE)
_FEAT = re.compile(r"^feat(\([^)]*\))?:", re.IGNORECASE)


def bump_from_commits(messages: list[str]) -> Bump:
    """Conventional commits: a breaking change is major, a feat minor, anything else patch."""
    part: Bump = "patch"
    for msg in messages:
        if _BREAKING.search(msg):
            return "major"
        if _FEAT.match(msg):
            part = "minor"
    return part


IMAGE_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def image_tag(version: str) -> str:
    """The image tag of a version, `v1.2.3` -> `1.2.3`: the one rule build and deploy share.

    An image tag allows `[A-Za-z0-9_.-]` only, so build metadata's `+` becomes `_`
    (`1.0.0-rc.1+build.5` -> `1.0.0-rc.1_build.5`): `_` never occurs in a semantic version,
    so the tag still names one version."""
    tag = Version.parse(version).plain.replace("+", "_")
    if not IMAGE_TAG_RE.fullmatch(tag):
        raise RegistryError(
            f"version `{version}` gives the image tag `{tag}`, longer than the 128 characters "
            "a registry accepts",
            hint="register a version with shorter pre-release or build identifiers",
        )
    return tag

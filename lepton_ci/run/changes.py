"""What changed between a record and its baseline: files, params, environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from lepton_ci.core.record import Environment, FileEntry, Record
from lepton_ci.run.gates import ParamChange, diff_params


@dataclass
class FileChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.modified)

    def describe(self, limit: int = 10) -> str:
        items = [f"{f} (modified)" for f in self.modified]
        items += [f"{f} (added)" for f in self.added]
        items += [f"{f} (removed)" for f in self.removed]
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more


@dataclass
class PackageChanges:
    """Distributions of the training interpreter: (name, baseline version, candidate version),
    a version None where the package is not installed."""

    rows: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.rows)

    def describe(self, limit: int = 10) -> str:
        items = []
        for name, old, new in self.rows:
            if old is None:
                items.append(f"{name} {new} (added)")
            elif new is None:
                items.append(f"{name} {old} (removed)")
            else:
                items.append(f"{name} {old} -> {new}")
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more


@dataclass
class Changes:
    code: FileChanges
    data: FileChanges
    params: list[ParamChange]
    environment: list[str]
    packages: PackageChanges = field(default_factory=PackageChanges)

    @property
    def any(self) -> bool:
        return self.code.any or self.data.any or bool(self.params) or bool(self.environment)

    def summary(self, limit: int = 5) -> list[str]:
        parts = []
        if self.data.any:
            parts.append(f"data: {self.data.describe(limit)}")
        if self.code.any:
            parts.append(f"code: {self.code.describe(limit)}")
        if self.params:
            parts.append(f"params: {len(self.params)} changed")
        parts += [f"environment: {e}" for e in self.environment]
        return parts


def _files(new: dict[str, FileEntry], old: dict[str, FileEntry]) -> FileChanges:
    return FileChanges(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        modified=sorted(k for k in set(new) & set(old) if new[k].hash != old[k].hash),
    )


def packages(new: Environment, old: Environment) -> PackageChanges:
    a, b = old.versions(), new.versions()
    return PackageChanges(
        [(n, a.get(n), b.get(n)) for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    )


def environment(new: Environment, old: Environment) -> tuple[list[str], PackageChanges]:
    env: list[str] = []
    pkgs = PackageChanges()
    if old.python != new.python:
        env.append(f"python {old.python} -> {new.python}")
    if old.platform != new.platform:
        env.append(f"platform {old.platform} -> {new.platform}")
    if old.interpreter and new.interpreter:  # both list their packages
        pkgs = packages(new, old)
        if pkgs.any:
            env.append(f"packages changed: {pkgs.describe()}")
        env += [
            f"lock file {name} changed"
            for name in sorted(set(old.locks) | set(new.locks))
            if old.locks.get(name) != new.locks.get(name)
        ]
    elif old.packages_digest != new.packages_digest:
        # A record from before the training interpreter was asked lists no packages.
        env.append(f"packages changed ({new.packages_source}; one record lists none)")
    was, now = old.accelerator, new.accelerator
    if (was and was.text()) != (now and now.text()) and (was or old.interpreter):
        env.append(
            f"accelerator {was.text() if was else 'none'} -> {now.text() if now else 'none'}"
        )
    return env, pkgs


def between(rec: Record) -> Changes | None:
    """None when there is no baseline, or the baseline's tag carries no lineage."""
    base = rec.baseline
    if base is None or base.lineage is None:
        return None
    env: list[str] = []
    pkgs = PackageChanges()
    if base.environment is not None:
        env, pkgs = environment(rec.environment, base.environment)
    return Changes(
        code=_files(rec.lineage.code, base.lineage.code),
        data=_files(rec.lineage.data, base.lineage.data),
        params=diff_params(rec.params, base.params),
        environment=env,
        packages=pkgs,
    )

"""What changed between a record and its baseline: files, params, environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from lepton_ci.core.record import FileEntry, Record
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
class Changes:
    code: FileChanges
    data: FileChanges
    params: list[ParamChange]
    environment: list[str]

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


def between(rec: Record) -> Changes | None:
    """None when there is no baseline, or the baseline's tag carries no lineage."""
    base = rec.baseline
    if base is None or base.lineage is None:
        return None
    env: list[str] = []
    if base.environment is not None:
        if base.environment.python != rec.environment.python:
            env.append(f"python {base.environment.python} -> {rec.environment.python}")
        if base.environment.platform != rec.environment.platform:
            env.append(f"platform {base.environment.platform} -> {rec.environment.platform}")
        if base.environment.packages_digest != rec.environment.packages_digest:
            env.append(f"packages changed ({rec.environment.packages_source})")
    return Changes(
        code=_files(rec.lineage.code, base.lineage.code),
        data=_files(rec.lineage.data, base.lineage.data),
        params=diff_params(rec.params, base.params),
        environment=env,
    )

"""What an image is called and what it says about itself, all from the evidence record."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from lepton_ci.core.config import ImageConfig
from lepton_ci.core.hashing import combine
from lepton_ci.core.record import Record
from lepton_ci.core.semver import Version, image_tag

RECORD_PATH = "/lepton/record.json"
CARD_PATH = "/lepton/model_card.md"
PREFIX = "dev.lepton-ci"


def tags(
    rec: Record,
    env: Mapping[str, str],
    pr: int | None = None,
    *,
    release: bool = True,
    floating: bool = True,
) -> list[str]:
    """X.Y.Z, X.Y and sha-<short> for a version; pr-<N> and sha-<short> for a PR build.

    `release=False` (a version not registered): sha-<short> only. `floating=False` (an older
    version than the newest of its X.Y): no X.Y. Every tag is checked here, before any upload."""
    short = f"sha-{rec.git.sha[:7]}"
    if pr is not None:
        return [f"pr-{pr}", short]
    if not rec.candidate_version or not release:
        return [short]
    v = Version.parse(rec.candidate_version)
    out = [image_tag(rec.candidate_version)]
    if not v.pre and floating:
        out.append(floating_tag(v))
    return [*out, short]


def floating_tag(v: Version) -> str:
    """The tag that follows the newest release of a minor line: `1.2` for 1.2.x."""
    return f"{v.major}.{v.minor}"


def outputs_digest(rec: Record) -> str:
    """One digest of the record's artifacts: with the commit, what an image's content is."""
    return combine({k: v.hash for k, v in rec.outputs.items()})


def created(rec: Record) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.git.commit_time))


def labels(
    rec: Record, cfg: ImageConfig, *, description: str = "", license_: str | None = None
) -> dict[str, str]:
    key = [g for g in rec.gates if g.key] or [g for g in rec.gates if g.verdict != "info"][:3]
    version = image_tag(rec.candidate_version) if rec.candidate_version else ""
    out = {
        "org.opencontainers.image.title": rec.model,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": rec.git.sha,
        "org.opencontainers.image.created": created(rec),
        "org.opencontainers.image.description": description[:500],
        f"{PREFIX}.model": rec.model,
        f"{PREFIX}.version": rec.candidate_version or "",
        f"{PREFIX}.verdict": rec.verdict,
        f"{PREFIX}.record-digest": rec.digest(),
        f"{PREFIX}.record-path": RECORD_PATH,
        f"{PREFIX}.metrics": json.dumps(
            {g.metric: g.candidate for g in key if g.candidate is not None}, sort_keys=True
        ),
        f"{PREFIX}.baseline": rec.baseline.tag if rec.baseline else "",
        f"{PREFIX}.outputs-digest": outputs_digest(rec),
    }
    if license_:
        out["org.opencontainers.image.licenses"] = license_
    if cfg.source:
        out["org.opencontainers.image.source"] = cfg.source
    out.update(cfg.labels)
    return out

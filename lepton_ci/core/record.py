"""The evidence record: what went into one model run, what came out, and how it scored.

Everything downstream (diff, gates, comment, card, tag message, image labels, deploy
annotations) reads this one document. Its JSON schema ships in the package and is versioned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from lepton_ci.core import atomic
from lepton_ci.core.errors import RecordError
from lepton_ci.core.hashing import hash_bytes

SCHEMA_VERSION: Literal[1] = 1


class _Model(BaseModel):
    # Validators are built on first use (see core/config.Strict): `show` validates one Record,
    # it need not build a validator for each of the record's dozen parts at import.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class GitInfo(_Model):
    sha: str
    branch: str | None = None
    dirty: bool = False
    untracked: list[str] = Field(
        default=[], description="inputs the run read that git does not track (they make it dirty)"
    )
    commit_time: int = Field(description="commit time, seconds since the epoch")
    author: str = ""
    subject: str = ""
    base_ref: str | None = Field(None, description="the pull request's base branch, if any")
    pr_head: str | None = Field(
        None,
        description="the pull request's head commit, when `sha` is GitHub's merge commit of it",
    )

    @model_serializer(mode="wrap")
    def _omit_no_untracked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Records without untracked inputs serialise (and digest) as before the field existed.
        data: dict[str, Any] = handler(self)
        if not data.get("untracked"):
            data.pop("untracked", None)
        return data


class FileEntry(_Model):
    hash: str
    size: int


class Lineage(_Model):
    code: dict[str, FileEntry] = {}
    data: dict[str, FileEntry] = {}
    params_files: dict[str, FileEntry] = {}
    code_digest: str = ""
    data_digest: str = ""


# Shown by name in the card, the PR comment and the site; the full list is there collapsed.
NOTABLE_PACKAGES = (
    "torch",
    "tensorflow",
    "jax",
    "keras",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "catboost",
    "transformers",
    "onnxruntime",
    "numpy",
    "scipy",
    "pandas",
    "polars",
)


class Accelerator(_Model):
    kind: Literal["nvidia"] = "nvidia"
    driver: str = Field(description="driver version, as nvidia-smi reports it")
    cuda: str | None = Field(None, description="the CUDA version the driver supports")
    devices: list[str] = Field(default=[], description="the GPUs' names")

    def text(self) -> str:
        cuda = f", CUDA {self.cuda}" if self.cuda else ""
        gpus = f" ({', '.join(self.devices)})" if self.devices else ""
        return f"NVIDIA driver {self.driver}{cuda}{gpus}"


class Environment(_Model):
    python: str = Field(description="the training interpreter's version")
    platform: str
    packages_digest: str = Field(
        description="digest of `packages` and `locks` (before they were recorded: of the lock "
        "files, or of the packages installed beside lepton-ci)"
    )
    packages_source: str = Field(
        description="`interpreter` (`packages` as the training interpreter has them); older "
        "records: which lock files, or `installed`"
    )
    interpreter: str | None = Field(None, description="path of the interpreter the commands run")
    interpreter_source: str | None = Field(None, description="how that interpreter was found")
    packages: list[str] = Field(
        default=[], description="`name==version` installed for it (PEP 503 names), sorted"
    )
    locks: dict[str, str] = Field(default={}, description="lock file -> blake3 digest")
    os: str | None = Field(None, description="kernel and distribution")
    accelerator: Accelerator | None = None

    @model_serializer(mode="wrap")
    def _omit_unrecorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A record written before these fields serialises (and digests) as it did then.
        data: dict[str, Any] = handler(self)
        for k in ("interpreter", "interpreter_source", "packages", "locks", "os", "accelerator"):
            if not data.get(k):
                data.pop(k, None)
        return data

    def versions(self) -> dict[str, str]:
        """name -> version of the recorded packages."""
        out = {}
        for p in self.packages:
            name, _, version = p.partition("==")
            out[name] = version
        return out

    def notable(self) -> list[tuple[str, str]]:
        """The frameworks a reader looks for first, in NOTABLE_PACKAGES' order."""
        have = self.versions()
        return [(n, have[n]) for n in NOTABLE_PACKAGES if n in have]


class Step(_Model):
    name: Literal["train", "evaluate"]
    command: str | list[str]
    exit_code: int | None = None
    started_at: str | None = None
    duration_s: float = 0.0
    skipped: bool = False


class CacheInfo(_Model):
    key: str
    hit: bool = False
    source: str | None = Field(None, description="where the reused result came from")
    reason: str = ""


class Baseline(_Model):
    version: str
    tag: str
    sha: str
    metrics: dict[str, float] = {}
    params: dict[str, Any] = {}
    lineage: Lineage | None = None
    environment: Environment | None = None


class GateResult(_Model):
    metric: str
    candidate: float | None
    baseline: float | None = None
    delta: float | None = None
    delta_pct: float | None = None
    direction: Literal["higher", "lower"] = "higher"
    status: Literal["improved", "regressed", "unchanged", "new", "missing", "removed"]
    verdict: Literal["pass", "fail", "info"]
    reasons: list[str] = []
    key: bool = False


class Record(_Model):
    schema_version: Literal[1] = 1
    model: str
    candidate_version: str | None = None
    created_at: str
    git: GitInfo
    params: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    lineage: Lineage = Lineage()
    outputs: dict[str, FileEntry] = {}
    environment: Environment
    steps: list[Step] = []
    cache: CacheInfo
    baseline: Baseline | None = None
    gates: list[GateResult] = []
    verdict: Literal["pass", "fail"] = "pass"
    run_url: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        return hash_bytes(self.to_json().encode())


def schema() -> dict[str, Any]:
    s = Record.model_json_schema()
    s["$id"] = f"https://lepton-ci.dev/schemas/record-v{SCHEMA_VERSION}.json"
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return s


def shipped_schema_path() -> Path:
    return Path(__file__).parent.parent / "schemas" / f"record-v{SCHEMA_VERSION}.json"


def parse(text: str, source: str, *, hint: str = "re-create it with `lepton-ci run`") -> Record:
    try:
        return Record.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        where = f"`{loc}`: " if loc else ""
        raise RecordError(
            f"{source}: not a valid evidence record: {where}{first['msg']}", hint=hint
        ) from None


def read_text(path: Path, hint: str = "re-create it with `lepton-ci run`") -> str:
    """A JSON file lepton-ci wrote, or one an untrusted run handed over: bytes that are not
    UTF-8 are a RecordError like any other invalid content."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(
            f"{path}: not UTF-8 (byte {e.start}), so not a valid evidence record", hint=hint
        ) from None


def load(path: Path, *, hint: str = "re-create it with `lepton-ci run`") -> Record:
    try:
        text = read_text(path, hint)
    except FileNotFoundError:
        raise RecordError(
            f"{path}: no evidence record", hint="run `lepton-ci run` first to create one"
        ) from None
    return parse(text, str(path), hint=hint)


def save(record: Record, path: Path) -> None:
    """Write atomically: a reader never sees half a record."""
    atomic.write_text(path, record.to_json())

"""`lepton-ci init`: lepton.yaml and the workflows for a repository, never overwriting."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lepton_ci.core.config import NAME_RE
from lepton_ci.core.errors import ConfigError
from lepton_ci.core.templating import template_dir

WORKFLOWS = (
    "model-pr.yml",
    "model-pr-comment.yml",
    "model-main.yml",
    "model-promote.yml",
    "model-tag.yml",
    "model-rollback.yml",
    "model-site.yml",
)


@dataclass
class Answers:
    model: str
    train: str = "python train.py"
    evaluate: str = "python evaluate.py"
    metrics: str = "metrics.json"
    key_metric: str = "accuracy"
    outputs: str = "model.pkl"


def default_model(root: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-") or "model"
    return name if NAME_RE.match(name) else "model"


def ask(answers: Answers, prompt: Callable[[str], str]) -> Answers:
    """Prompt for each answer in a terminal; Enter keeps the default shown."""
    for field in ("model", "train", "evaluate", "metrics", "key_metric", "outputs"):
        current = getattr(answers, field)
        reply = prompt(f"{field.replace('_', ' ')} [{current}]: ").strip()
        if reply:
            setattr(answers, field, reply)
    return answers


def config_text(a: Answers) -> str:
    return f"""\
# lepton-ci configuration. Reference: https://github.com/lepton-ci/lepton-ci#configuration
models:
  {a.model}:
    train: {a.train}
    evaluate: {a.evaluate}
    params: []            # e.g. [params.yaml]
    code: ["**/*.py"]
    data: []              # e.g. [data/]
    outputs: [{a.outputs}]
    metrics: [{a.metrics}]
    gates:
      {a.key_metric}: {{direction: higher, max_regression: 0.01, key: true}}
stages:
  staging: {{}}
  prod: {{requires: staging}}
"""


def init(root: Path, answers: Answers) -> list[Path]:
    if not NAME_RE.match(answers.model):
        raise ConfigError(
            f"model name `{answers.model}` is not valid",
            hint="use lowercase letters, digits and `-`, starting with a letter",
        )
    targets = {root / "lepton.yaml": config_text(answers)}
    source = template_dir() / "workflows"
    for name in WORKFLOWS:
        text = (source / name).read_text(encoding="utf-8")
        targets[root / ".github" / "workflows" / name] = text.replace(
            "model: digits", f"model: {answers.model}"
        ).replace("report/digits", f"report/{answers.model}")
    existing = [p for p in targets if p.exists()]
    if existing:
        raise ConfigError(
            "lepton-ci init writes nothing over existing files: "
            + ", ".join(str(p.relative_to(root)) for p in existing),
            hint="move them aside, or merge the settings by hand (see the README)",
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)

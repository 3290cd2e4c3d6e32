"""`lepton-ci init`: a lepton.yaml that runs, and the workflows, never overwriting.

It proposes what it can see: the train and evaluate scripts that exist and the interpreter
that runs them, the metric names in an existing metrics file (or in the one a training run
writes, when the user agrees to run it once), a gate per metric with the direction its name
implies, and the files training wrote as outputs. What it cannot see, it names as a to-do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lepton_ci.core.config import NAME_RE
from lepton_ci.core.errors import ConfigError
from lepton_ci.core.templating import template_dir
from lepton_ci.init import detect

WORKFLOWS = (
    "model-pr.yml",
    "model-pr-comment.yml",
    "model-main.yml",
    "model-promote.yml",
    "model-tag.yml",
    "model-rollback.yml",
    "model-site.yml",
)
TRAIN_TIMEOUT_S = 3600.0

Prompt = Callable[[str], str]
Log = Callable[[str], None]


@dataclass
class Answers:
    """One model's settings, as proposed and then confirmed."""

    model: str
    train: str | None = None
    evaluate: str | None = None
    metrics: str = "metrics.json"
    key_metric: str | None = None
    outputs: str = ""  # comma-separated paths
    path: str = "."
    metric_names: list[str] = field(default_factory=list)


@dataclass
class Result:
    written: list[Path]
    models: list[Answers]
    todo: list[str]

    @property
    def ready(self) -> bool:
        """Nothing left to fill in: `lepton-ci run` can go."""
        return not self.todo


def default_model(root: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-") or "model"
    return name if NAME_RE.match(name) else "model"


def ask(answers: Answers, prompt: Prompt) -> Answers:
    """Prompt for each answer in a terminal; Enter keeps the default shown."""
    for name in ("model", "train", "evaluate", "metrics", "key_metric", "outputs"):
        current = getattr(answers, name)
        reply = prompt(f"{name.replace('_', ' ')} [{current or ''}]: ").strip()
        if reply:
            setattr(answers, name, reply)
    return answers


def confirm(prompt: Prompt | None, question: str, *, default: bool) -> bool:
    """A yes/no question; without a terminal the default stands."""
    if prompt is None:
        return default
    reply = prompt(f"{question} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
    return default if not reply else reply in ("y", "yes")


def propose(root: Path, model: str | None = None) -> list[Answers]:
    """One Answers per model directory found; a placeholder when there is none."""
    python = detect.interpreter()
    found = detect.find_models(root)
    out = []
    for f in found:
        rel = f.path.relative_to(root).as_posix() if f.path != root else "."
        a = Answers(
            model=default_model(f.path),
            path=rel,
            train=detect.command_for(f.train, python) if f.train else None,
            evaluate=detect.command_for(f.evaluate, python) if f.evaluate else None,
            outputs=", ".join(detect.existing_outputs(f.path)),
        )
        if f.metrics is not None:
            a.metrics = f.metrics.name
            read_metrics(a, f.metrics)
        out.append(a)
    if not out:
        out.append(Answers(model=default_model(root)))
    if model and len(out) == 1:
        out[0].model = model
    return out


def read_metrics(a: Answers, path: Path) -> None:
    a.metric_names = detect.metric_names(path)
    if a.key_metric not in a.metric_names:  # a key the user named stays
        a.key_metric = detect.key_metric(a.metric_names)


def train_once(root: Path, a: Answers, env: dict[str, str], log: Log) -> None:
    """Run the training (and evaluation) once to learn the metric names and the outputs."""
    from lepton_ci.run.commands import run_command

    workdir = root / a.path
    before = detect.snapshot(workdir)
    for step, command in (("train", a.train), ("evaluate", a.evaluate)):
        if not command:
            continue
        log(f"init: running `{command}` once in {a.path} to see what it writes")
        result = run_command(step, command, cwd=workdir, env=env, timeout_s=TRAIN_TIMEOUT_S)
        if result.exit_code != 0:
            log(f"init: `{command}` exited {result.exit_code}; metrics and outputs left to you")
            return
    new = detect.written(before, detect.snapshot(workdir))
    metrics = next(
        (p for p in detect.METRICS_FILES if p in new),
        next((p for p in new if p.endswith((".json", ".yaml", ".yml"))), None),
    )
    if metrics and detect.metric_names(workdir / metrics):
        a.metrics = metrics
        read_metrics(a, workdir / metrics)
    outputs = detect.top_level([p for p in new if p != a.metrics])[: detect.MAX_OUTPUTS]
    if outputs:
        a.outputs = ", ".join(outputs)


def todo(root: Path, a: Answers) -> list[str]:
    """What the user must still fill in for `lepton-ci run` to pass, said exactly."""
    where = f"lepton.yaml: models.{a.model}"
    if not a.train:
        return [
            f"{where}.train: no {' or '.join(detect.TRAIN_SCRIPTS)} found; write the command "
            "that trains your model (and `evaluate:` if another command writes the metrics)"
        ]
    if not a.metric_names:
        found = (
            "has no numbers by name"
            if (root / a.path / a.metrics).is_file()
            else "is not there yet"
        )
        return [
            f"{where}.metrics: the file your training or evaluation writes ({a.metrics} "
            f"{found}), and under `gates:` one line per metric in it, e.g. "
            "`rmse: {direction: lower, key: true}`"
        ]
    if a.key_metric is None:
        return [
            f"{where}.gates: whether higher or lower is better for "
            f"{', '.join(a.metric_names)} is not known; set `direction:` and put `key: true` "
            "on the metric that matters"
        ]
    return []


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly `value` (quoted when it must be)."""
    plain = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_ ./=-]*", value) is not None
    if plain and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def gate_lines(a: Answers) -> list[str]:
    """A gate per metric: the key one judged tightly, others loosely, timings and metrics of
    unknown direction only shown (informational) until the user says which way is better."""
    lines = []
    for name in a.metric_names:
        direction = detect.direction(name)
        if name == a.key_metric:
            gate = f"direction: {direction or 'higher'}, max_regression_pct: 2, key: true"
        elif direction is None or detect.is_timing(name):
            gate = f"direction: {direction or 'higher'}, informational: true"
        else:
            gate = f"direction: {direction}, max_regression_pct: 5"
        unsure = "  # higher or lower?" if direction is None else ""
        lines.append(f"      {_scalar(name)}: {{{gate}}}{unsure}")
    return lines


def model_text(a: Answers) -> str:
    lines = [f"  {_scalar(a.model)}:"]
    if a.path != ".":
        lines.append(f"    path: {_scalar(a.path)}")
    lines.append(f"    train: {_scalar(a.train or 'python3 train.py')}")
    if a.evaluate:
        lines.append(f"    evaluate: {_scalar(a.evaluate)}")
    outputs = [o.strip() for o in a.outputs.split(",") if o.strip()]
    lines += [
        "    params: []            # e.g. [params.yaml]",
        '    code: ["**/*.py"]',
        "    data: []              # e.g. [data/]",
        f"    outputs: [{', '.join(_scalar(o) for o in outputs)}]",
        f"    metrics: [{_scalar(a.metrics)}]",
    ]
    gates = gate_lines(a)
    lines += ["    gates:", *gates] if gates else ["    gates: {}             # one per metric"]
    return "\n".join(lines) + "\n"


def config_text(models: list[Answers]) -> str:
    return (
        "# lepton-ci configuration. Reference: https://github.com/lepton-ci/lepton-ci#configuration\n"
        "models:\n"
        + "".join(model_text(a) for a in models)
        + "stages:\n  staging: {}\n  prod: {requires: staging}\n"
    )


def workflow_text(name: str, model: str) -> str:
    text = (template_dir() / "workflows" / name).read_text(encoding="utf-8")
    return text.replace("model: digits", f"model: {model}").replace(
        "report/digits", f"report/{model}"
    )


def check_names(models: list[Answers]) -> None:
    names = [a.model for a in models]
    for name in names:
        if not NAME_RE.match(name):
            raise ConfigError(
                f"model name `{name}` is not valid",
                hint="use lowercase letters, digits and `-`, starting with a letter",
            )
    if len(set(names)) != len(names):
        raise ConfigError(
            f"two models would be called the same: {', '.join(names)}",
            hint="pass --model for one, or rename a directory",
        )


def refuse_existing(root: Path) -> None:
    paths = [root / "lepton.yaml", *(root / ".github" / "workflows" / n for n in WORKFLOWS)]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise ConfigError(
            "lepton-ci init writes nothing over existing files: "
            + ", ".join(str(p.relative_to(root)) for p in existing),
            hint="move them aside, or merge the settings by hand (see the README)",
        )


def write(root: Path, models: list[Answers]) -> list[Path]:
    """lepton.yaml and the workflows; nothing is written when any of them exists."""
    check_names(models)
    refuse_existing(root)
    targets = {root / "lepton.yaml": config_text(models)}
    for name in WORKFLOWS:
        targets[root / ".github" / "workflows" / name] = workflow_text(name, models[0].model)
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)


def init(root: Path, answers: Answers) -> list[Path]:
    """Write the files for one model as answered (no detection, no prompts)."""
    return write(root, [answers])


def init_repo(
    root: Path,
    *,
    model: str | None = None,
    overrides: dict[str, str] | None = None,
    prompt: Prompt | None = None,
    may_run: bool = False,
    env: dict[str, str] | None = None,
    log: Log = print,
) -> Result:
    """Detect, ask (with a terminal), maybe train once, write. `may_run`: training may be run
    without asking (`--yes`); with a prompt, the user is asked first."""
    models = propose(root, model)
    for a in models:
        for name, value in (overrides or {}).items():
            setattr(a, name, value)
        if prompt is not None:
            log(f"init: the model in {a.path} (Enter keeps the value shown)")
            ask(a, prompt)
    check_names(models)  # both before anything runs
    refuse_existing(root)
    for a in models:
        if a.train and not a.metric_names:
            question = f"run `{a.train}` once now to find the metric names and outputs?"
            if may_run or (prompt is not None and confirm(prompt, question, default=True)):
                train_once(root, a, dict(os.environ if env is None else env), log)
        metrics_file = root / a.path / a.metrics
        if not a.metric_names and metrics_file.is_file():
            read_metrics(a, metrics_file)
    written = write(root, models)
    todos = [t for a in models for t in todo(root, a)]
    if len(models) > 1:
        log(
            f"init: the workflows name model `{models[0].model}`; for "
            f"{', '.join(a.model for a in models[1:])}, copy the lepton-ci steps with "
            "`model:` set to each"
        )
    return Result(written=written, models=models, todo=todos)


def next_step(
    root: Path, result: Result, *, may_run: bool, prompt: Prompt | None
) -> tuple[list[str], bool]:
    """What to tell the user last, and whether to run `lepton-ci run` now."""
    if not result.ready:
        return ["fill in, then `lepton-ci run`:", *(f"  - {t}" for t in result.todo)], False
    if not has_commit(root):
        return ["next: commit (git add -A && git commit), then `lepton-ci run`"], False
    if may_run or (prompt and confirm(prompt, "run `lepton-ci run` now?", default=True)):
        return ["init: lepton-ci run"], True
    return ["next: `lepton-ci run`"], False


def has_commit(root: Path) -> bool:
    """`lepton-ci run` records a commit: a repository without one cannot run yet."""
    import subprocess

    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"],
        cwd=root,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def command(
    root: Path,
    *,
    model: str | None,
    overrides: dict[str, str],
    interactive: bool,
    yes: bool,
    no_run: bool,
    env: dict[str, str],
    log: Log,
) -> bool:
    """`lepton-ci init`: propose, write, say what comes next. True: run `lepton-ci run` now."""
    prompt = input if interactive else None
    may_run = yes and not no_run
    result = init_repo(
        root, model=model, overrides=overrides, prompt=prompt, may_run=may_run, env=env, log=log
    )
    for p in result.written:
        log(f"wrote {p.relative_to(root)}")
    lines, run_now = next_step(root, result, may_run=may_run, prompt=prompt)
    for line in lines:
        log(line)
    return run_now

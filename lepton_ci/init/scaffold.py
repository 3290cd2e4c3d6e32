"""`lepton-ci init`: a lepton.yaml that runs, and the workflows, never overwriting.

It proposes what it can see: the train and evaluate scripts that exist and the interpreter
that runs them, the metric names in an existing metrics file (or in the one a training run
writes, when the user agrees to run it once), a gate per metric with the direction its name
implies, and the files training wrote as outputs. What it cannot see, it names as a to-do.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lepton_ci.core import docs
from lepton_ci.core import paths as lepton_paths
from lepton_ci.core.config import ImageConfig
from lepton_ci.core.errors import ConfigError, InputError
from lepton_ci.core.escape import one_line
from lepton_ci.core.names import valid_model
from lepton_ci.core.record import Step
from lepton_ci.core.templating import template_dir
from lepton_ci.init import deps, detect, gitignore, repo, scripts

WORKFLOWS = (
    "model-pr.yml",
    "model-pr-comment.yml",
    "model-main.yml",
    "model-promote.yml",
    "model-tag.yml",
    "model-rollback.yml",
    "model-site.yml",
)
TRAIN_TIMEOUT_S = 3600.0  # the default `timeout_minutes`, so the run can adopt the training
# the comment in the shipped workflows where init puts the step that installs the training
# dependencies (the examples need none, so they carry only the comment)
DEPS_MARKER = "# Training dependencies:"
SERVERS = ("serve.py", "server.py", "app.py", "main.py")

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
    outputs: list[str] = field(default_factory=list)  # paths as they are, not globs
    path: str = "."
    params: str | None = None
    metric_names: list[str] = field(default_factory=list)


@dataclass
class Result:
    written: list[Path]
    models: list[Answers]
    todo: list[str]
    ran: dict[str, list[Step]] = field(default_factory=dict)  # model -> what init trained

    @property
    def ready(self) -> bool:
        """Nothing left to fill in: `lepton-ci run` can go."""
        return not self.todo


def default_model(root: Path) -> str:
    """A name lepton.yaml takes (GTO's grammar), from the directory's: `2d_unet` -> `2d-unet`."""
    return model_name(root.resolve().name)


def model_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name:
        return "model"
    return name if valid_model(name) else f"model-{name}"


def distinct_names(models: list[Answers]) -> None:
    """Models whose directories give the same name are named by their paths instead
    (`models/a/unet`, `other/unet` -> `models-a-unet`, `other-unet`), then numbered."""
    names = [a.model for a in models]
    for a in models:
        if names.count(a.model) > 1 and a.path != ".":
            a.model = model_name(a.path)
    seen: set[str] = set()
    for a in models:
        name, n = a.model, 2
        while a.model in seen:
            a.model, n = f"{name}-{n}", n + 1
        seen.add(a.model)


def ask(answers: Answers, prompt: Prompt) -> Answers:
    """Prompt for each answer in a terminal; Enter keeps the default shown."""
    for name in ("model", "train", "evaluate", "metrics", "key_metric", "outputs"):
        current = getattr(answers, name)
        if name == "outputs":
            current = ", ".join(current)
        reply = prompt(f"{name.replace('_', ' ')} [{current or ''}]: ").strip()
        if reply and name == "outputs":
            answers.outputs = [o.strip() for o in reply.split(",") if o.strip()]
        elif reply:
            setattr(answers, name, reply)
    return answers


def confirm(prompt: Prompt | None, question: str, *, default: bool) -> bool:
    """A yes/no question; without a terminal the default stands."""
    if prompt is None:
        return default
    reply = prompt(f"{question} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
    return default if not reply else reply in ("y", "yes")


def propose(root: Path, model: str | None = None, log: Log = print) -> list[Answers]:
    """One Answers per model directory found (none when no train script is found)."""
    python = detect.interpreter()
    out = []
    for f in detect.find_models(root):
        rel = f.path.relative_to(root).as_posix() if f.path != root else "."
        a = Answers(
            model=default_model(f.path),
            path=rel,
            train=_command(f.train, f.path, python),
            evaluate=_command(f.evaluate, f.path, python),
            outputs=detect.existing_outputs(f.path),
            params=f.params.relative_to(f.path).as_posix() if f.params else None,
        )
        for step, found in (("train", f.train), ("evaluate", f.evaluate)):
            _say_chosen(log, rel, step, found, f.path)
        if f.metrics is not None:
            a.metrics = f.metrics.name
            read_metrics(a, f.metrics)
        out.append(a)
    distinct_names(out)
    if model and len(out) > 1:
        raise InputError(
            f"--model names the model of a one-model repository; {root} has {len(out)}: "
            + ", ".join(f"{a.model} ({a.path})" for a in out),
            hint="their names come from their directories: run `lepton-ci init` without "
            "--model (or in a terminal, to answer each name), or rename a directory",
        )
    if model and out:
        out[0].model = model
    return out


def _command(found: scripts.Scripts, directory: Path, python: str) -> str | None:
    return scripts.command_for(found.chosen, directory, python) if found.chosen else None


def _say_chosen(log: Log, where: str, step: str, found: scripts.Scripts, directory: Path) -> None:
    if found.chosen is None:
        return
    rel = found.chosen.relative_to(directory).as_posix()
    others = [p.relative_to(directory).as_posix() for p in found.others]
    also = f" (also found: {', '.join(others)}; pass --{step} to choose another)" if others else ""
    log(f"init: {step} script in {where}: {rel}{also}")


def no_train_script(root: Path, model: str) -> InputError:
    """Nothing to train with: name the key, the flag and what was looked for."""
    notebooks = [p.relative_to(root).as_posix() for p in detect.notebooks(root)]
    export = (
        f"; {', '.join(notebooks)} is a notebook: export it first "
        f"(jupyter nbconvert --to script {shlex.quote(notebooks[0])})"
        if notebooks
        else ""
    )
    return InputError(
        f"no train script found in {root} (looked for train.py, train_model.py, train.sh, "
        f"train*.py, and those in scripts/, src/ and notebooks/){export}",
        hint=f"pass the command that trains your model: `lepton-ci init --train "
        f"'python3 path/to/train.py'` (it becomes `models.{model}.train` in lepton.yaml)",
    )


def read_metrics(a: Answers, path: Path) -> None:
    a.metric_names = detect.metric_names(path)
    if a.key_metric not in a.metric_names:  # a key the user named stays
        a.key_metric = detect.key_metric(a.metric_names)


def train_once(root: Path, a: Answers, env: dict[str, str], log: Log) -> list[Step] | None:
    """Run the training (and evaluation) once to learn the metric names and the outputs.
    Returns the steps when both succeeded: `lepton-ci run` adopts them instead of training
    again. The commands see what `run` gives them (LEPTON_MODEL, LEPTON_MODEL_DIR)."""
    from lepton_ci.run.commands import run_command

    workdir = root / a.path
    env = {**env, "LEPTON_MODEL": a.model, "LEPTON_MODEL_DIR": str(workdir.resolve())}
    before = detect.snapshot(workdir)
    steps = []
    for step, command in (("train", a.train), ("evaluate", a.evaluate)):
        if not command:
            continue
        log(f"init: running `{command}` once in {a.path} to see what it writes")
        result = run_command(step, command, cwd=workdir, env=env, timeout_s=TRAIN_TIMEOUT_S)
        if result.exit_code != 0:
            log(f"init: `{command}` exited {result.exit_code}; metrics and outputs left to you")
            return None
        steps.append(
            Step(
                name=step,
                command=command,
                exit_code=0,
                started_at=result.started_at,
                duration_s=result.duration_s,
            )
        )
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
        a.outputs = outputs
    return steps


def todo(root: Path, a: Answers) -> list[str]:
    """What the user must still fill in for `lepton-ci run` to pass, said exactly."""
    where = f"lepton.yaml: models.{a.model}"
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
            f"{', '.join(one_line(n) for n in a.metric_names)} is not known; set `direction:` "
            "and put `key: true` on the metric that matters"
        ]
    return []


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly `value` (quoted when it must be)."""
    plain = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_ ./=-]*", value) is not None
    if plain and yaml.safe_load(value) == value:
        return value
    # PyYAML's own double-quoted style: unicode as is, what YAML cannot hold raw escaped.
    # (json.dumps is not YAML: it splits an emoji into two surrogates YAML will not join.)
    text = yaml.safe_dump(value, default_style='"', allow_unicode=True, width=2**31 - 1)
    return text.removesuffix("\n").removesuffix("\n...")


def gate_lines(a: Answers) -> list[str]:
    """A gate per metric: the key one judged tightly, others loosely, timings and metrics of
    unknown direction only shown (informational) until the user says which way is better."""
    lines = []
    shares = [n for n in a.metric_names if detect.is_share(n) and n != a.key_metric]
    for name in a.metric_names:
        if name in shares:
            continue
        direction = detect.direction(name)
        if name == a.key_metric:
            gate = f"direction: {direction or 'higher'}, max_regression_pct: 2, key: true"
        elif direction is None or detect.is_timing(name):
            gate = f"direction: {direction or 'higher'}, informational: true"
        else:
            gate = f"direction: {direction}, max_regression_pct: 5"
        unsure = "  # higher or lower?" if direction is None else ""
        lines.append(f"      {_scalar(name)}: {{{gate}}}{unsure}")
    if shares:
        lines.append(
            f"      # not gated: {one_line(', '.join(shares[:3]))}"
            f"{' ...' if len(shares) > 3 else ''} (a class distribution, the drift SLO's "
            "reference: neither way is better)"
        )
    return lines


def model_text(a: Answers, root: Path) -> str:
    lines = [f"  {_scalar(a.model)}:"]
    if a.path != ".":
        lines.append(f"    path: {_scalar(a.path)}")
    if a.train:
        lines.append(f"    train: {_scalar(a.train)}")
    if a.evaluate:
        lines.append(f"    evaluate: {_scalar(a.evaluate)}")
    # code and outputs are globs: a `[` or `*` in a file's name is the file's
    outputs = [glob.escape(o) for o in a.outputs]
    params = (
        f"    params: [{_scalar(a.params)}]"
        if a.params
        else "    params: []            # e.g. [params.yaml]: a change trains again"
    )
    lines += [
        params,
        f"    code: [{', '.join(_scalar(c) for c in code_globs(a, root))}]",
        "    data: []              # e.g. [data/]",
        f"    outputs: [{', '.join(_scalar(o) for o in outputs)}]",
        f"    metrics: [{_scalar(a.metrics)}]",
    ]
    gates = gate_lines(a)
    if any(not g.lstrip().startswith("#") for g in gates):
        lines += ["    gates:", *gates]
    else:
        lines += ["    gates: {}             # one per metric", *gates]
    lines += image_lines(a, root) + DEPLOY_LINES
    return "\n".join(lines) + "\n"


def code_globs(a: Answers, root: Path) -> list[str]:
    """`**/*.py`, the scripts the commands run that it misses (`train.sh`) and the config
    files a training reads (`conf/`): a change to any of them must train again."""
    workdir = root / a.path
    scripts_run = [
        f
        for c in (a.train, a.evaluate)
        for f in detect.command_files(c, workdir)
        if not f.endswith(".py")
    ]
    extra = [glob.escape(f) for f in scripts_run + detect.config_inputs(workdir)]
    return ["**/*.py", *dict.fromkeys(extra)]


def environment_lines(models: list[Answers], root: Path) -> list[str]:
    """`environment.python` when a train or evaluate script runs a venv's interpreter (which
    `run` cannot see in a `bash train.sh`); commented when that is a guess."""
    found = []
    for a in models:
        workdir = root / a.path
        run = [workdir / f for c in (a.train, a.evaluate) for f in detect.command_files(c, workdir)]
        venv = detect.venv_python(root, workdir, run)
        if venv is not None:
            found.append(venv)
    if not found:
        return []
    venv = next((v for v in found if v.sure), found[0])
    if venv.sure:
        return [
            "environment:          # the interpreter the training runs: its packages are recorded",
            f"  python: {_scalar(venv.python)}",
        ]
    return [
        "# environment:        # the interpreter the training runs, if it is this one",
        f"#   python: {_scalar(venv.python)}",
    ]


def image_lines(a: Answers, root: Path) -> list[str]:
    """`image:` for `lepton-ci build`: a base with Python, the serving requirements, the
    server if one is found; what is not known is a comment saying what to put there."""
    workdir = root / a.path
    owner = repo.origin(root)
    name = f"ghcr.io/{owner.split('/')[0] if owner else 'OWNER'}/{a.model}"
    lines = [
        "    image:                # `lepton-ci build`: base, dependencies, code, model layers",
        f"      name: {_scalar(name)}"
        + ("" if owner else "   # OWNER: your GitHub user or organization"),
        "      base: docker.io/library/python:3.12-slim   # an image with your Python",
    ]
    requirements = deps.serving(workdir, root)
    if requirements:
        line = f"requirements: {_scalar(requirements)}   # serving dependencies (wheels)"
        has_key = "requirements" in ImageConfig.model_fields
        # a lepton-ci without the dependency layer would refuse the key
        lines.append(f"      {line}" if has_key else f"      # {line}")
    server = next((s for s in SERVERS if (workdir / s).is_file()), None)
    if server:
        lines.append(f"      entrypoint: [python3, {_scalar(server)}]")
    else:
        lines.append("      # entrypoint: [python3, serve.py]   # the server, loading the outputs")
    lines.append("      ports: [8080]")
    return lines


DEPLOY_LINES = [
    f"    # deploy:               # `lepton-ci deploy staging`: {docs.page('explanation/deploys')}",
    "    #   target: podman      # or kubernetes",
    "    #   environments:",
    "    #     staging:",
    "    #       host_port: 8080",
    "    #       checks:",
    "    #         http: [{path: /healthz, status: 200}]",
]


def config_text(models: list[Answers], root: Path | None = None) -> str:
    root = root or Path.cwd()
    return (
        f"# lepton-ci configuration. Reference: {docs.page('reference/config')}\n"
        "models:\n"
        + "".join(model_text(a, root) for a in models)
        + "stages:\n  staging: {}\n  prod: {requires: staging}\n"
        + "".join(f"{line}\n" for line in environment_lines(models, root))
    )


def workflow_text(name: str, model: str, installs: list[deps.Install] | None = None) -> str:
    """A shipped workflow for `model`, with the step that installs `installs` after the
    marker comment (where the shipped workflows train)."""
    text = (template_dir() / "workflows" / name).read_text(encoding="utf-8")
    text = text.replace("model: digits", f"model: {model}").replace(
        "report/digits", f"report/{model}"
    )
    if not installs:
        return text
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith(DEPS_MARKER):
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            while i + 1 < len(lines) and lines[i + 1].strip().startswith("#"):
                i += 1
            lines.insert(i + 1, deps.step_text(installs, indent))
        i += 1
    return "".join(lines)


def check_names(models: list[Answers]) -> None:
    """The rule lepton.yaml applies (GTO's grammar, one state file per model)."""
    names = [a.model for a in models]
    for name in names:
        if not valid_model(name):
            raise ConfigError(
                f"model name `{name}` is not valid",
                hint="use letters, digits, `-`, `_` and `/`, starting and ending with a letter "
                "or digit (e.g. `churn`, `2d-unet`)",
            )
    slugs = [lepton_paths.slug(n) for n in names]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(
            f"two models would be called the same: {', '.join(names)}",
            hint="give each its own name at the `model` prompt, or rename a directory",
        )


def targets(root: Path) -> list[Path]:
    """Every file init writes, in order: lepton.yaml, the workflows, .gitignore."""
    flows = [root / ".github" / "workflows" / n for n in WORKFLOWS]
    return [root / "lepton.yaml", *flows, root / ".gitignore"]


def refuse_existing(root: Path) -> None:
    """Before anything is written or run: no file of ours exists, each folder on the way is a
    folder (or absent) we may write in, and `.gitignore` is a file we can append to."""
    *ours, ignore = targets(root)
    existing = [p for p in ours if p.exists() or p.is_symlink()]
    if existing:
        raise ConfigError(
            "lepton-ci init writes nothing over existing files: "
            + ", ".join(str(p.relative_to(root)) for p in existing),
            hint=f"move them aside, or merge the settings by hand ({docs.page('reference/init')})",
        )
    for path in [*ours, ignore]:
        for folder in reversed(path.relative_to(root).parents):
            where = root / folder
            if where.exists() and not where.is_dir():
                raise InputError(
                    f"{where} is not a directory: lepton-ci init writes "
                    f"{path.relative_to(root)} in it",
                    hint=f"move {where.relative_to(root) if where != root else where} aside "
                    "(GitHub reads workflows from the directory .github/workflows)",
                )
            if where.is_dir() and not os.access(where, os.W_OK | os.X_OK):
                raise InputError(
                    f"{where} is not writable: lepton-ci init writes {path.relative_to(root)}",
                    hint=f"make it writable (chmod u+w {shlex.quote(str(where))})",
                )
    if (ignore.exists() or ignore.is_symlink()) and not ignore.is_file():
        raise InputError(
            f"{ignore} is not a file: lepton-ci init appends what training writes to it",
            hint="move it aside (git reads ignore rules from a file named .gitignore)",
        )
    if ignore.is_file() and not os.access(ignore, os.R_OK | os.W_OK):
        raise InputError(
            f"{ignore} is not writable: lepton-ci init appends what training writes to it",
            hint=f"make it writable (chmod u+rw {shlex.quote(str(ignore))})",
        )


def write(root: Path, models: list[Answers], log: Log = print) -> list[Path]:
    """lepton.yaml, the workflows (installing the training dependencies before `run`) and
    .gitignore's lines; nothing is written when lepton.yaml or a workflow exists."""
    repo.refuse_git_dir(root)
    check_names(models)
    refuse_existing(root)
    installs = deps.training(root, [(root / a.path).resolve() for a in models])
    for source in deps.unsafe(installs):
        log(f"init: {source}: install it in the workflows yourself (its path needs quoting)")
    installs = [i for i in installs if i.source not in deps.unsafe(installs)]
    if installs:
        log(
            "init: the workflows install the training dependencies from "
            + ", ".join(i.source for i in installs)
        )
    texts = {root / "lepton.yaml": config_text(models, root)}
    for name in WORKFLOWS:
        texts[root / ".github" / "workflows" / name] = workflow_text(
            name, models[0].model, installs
        )
    with all_or_nothing(root) as created:
        for path, text in texts.items():
            _mkdirs(path.parent, created)
            created.append(path)
            path.write_text(text, encoding="utf-8")
        added = gitignore.update(root, ignored_paths(root, models))
    log(
        "init: files your training reads must be listed in lepton.yaml's `code:`, `data:` or "
        "`params:`: a change to an unlisted one is a cache hit with the old metrics"
    )
    if added:
        log(f"init: .gitignore: added {', '.join(added)}")
        return [*texts, root / ".gitignore"]
    return list(texts)


def _mkdirs(folder: Path, created: list[Path]) -> None:
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir()
        created.append(p)


@contextlib.contextmanager
def all_or_nothing(root: Path) -> Iterator[list[Path]]:
    """What is created is listed; on any failure it is removed and .gitignore restored, so a
    second `init` finds the repository as the first found it."""
    ignore = root / ".gitignore"
    before = ignore.read_bytes() if ignore.is_file() else None
    created: list[Path] = []
    try:
        yield created
    except BaseException as e:
        for p in reversed(created):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                else:
                    p.unlink()
        with contextlib.suppress(OSError):
            if before is not None:
                ignore.write_bytes(before)
            elif ignore.is_file():
                ignore.unlink()
        if isinstance(e, OSError):
            where = f"{e.filename}: " if e.filename else ""
            raise InputError(
                f"lepton-ci init could not write: {where}{e.strerror or e}; nothing was written",
                hint="fix that (space, permissions), then run `lepton-ci init` again",
            ) from e
        raise


def ignored_paths(root: Path, models: list[Answers]) -> list[str]:
    """`.lepton/`, and each model's outputs and metrics files (relative to the root)."""
    out = [".lepton/"]
    for a in models:
        for rel in [*a.outputs, a.metrics]:
            path = (root / a.path / rel).resolve()
            try:
                posix = path.relative_to(root.resolve()).as_posix()
            except ValueError:  # outside the repository: not ours to ignore
                continue
            out.append(posix + ("/" if path.is_dir() else ""))
    return out


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
    repo.refuse_git_dir(root)
    models = propose(root, model, log) or [Answers(model=model or default_model(root))]
    for a in models:
        for name, value in (overrides or {}).items():
            setattr(a, name, value)
        if prompt is not None:
            log(f"init: the model in {a.path} (Enter keeps the value shown)")
            ask(a, prompt)
        if not a.train and not a.evaluate:
            raise no_train_script(root / a.path, a.model)
    check_names(models)  # both before anything runs
    refuse_existing(root)
    ran = {}
    for a in models:
        if a.train and not a.metric_names:
            question = f"run `{a.train}` once now to find the metric names and outputs?"
            if may_run or (prompt is not None and confirm(prompt, question, default=True)):
                steps = train_once(root, a, dict(os.environ if env is None else env), log)
                if steps is not None:
                    ran[a.model] = steps
        metrics_file = root / a.path / a.metrics
        if not a.metric_names and metrics_file.is_file():
            read_metrics(a, metrics_file)
    written = write(root, models, log)
    todos = [t for a in models for t in todo(root, a)]
    if len(models) > 1:
        log(
            f"init: the workflows name model `{models[0].model}`; for "
            f"{', '.join(a.model for a in models[1:])}, copy the lepton-ci steps with "
            "`model:` set to each"
        )
    return Result(written=written, models=models, todo=todos, ran=ran)


def next_step(
    root: Path, result: Result, *, may_run: bool, prompt: Prompt | None
) -> tuple[list[str], bool]:
    """What to tell the user last, and whether to run `lepton-ci run` now."""
    if not result.ready:
        return ["fill in, then `lepton-ci run`:", *(f"  - {t}" for t in result.todo)], False
    if not repo.has_commit(root):
        return ["next: commit (git add -A && git commit), then `lepton-ci run`"], False
    if may_run or (prompt and confirm(prompt, "run `lepton-ci run` now?", default=True)):
        return ["init: lepton-ci run"], True
    return ["next: `lepton-ci run`"], False


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
) -> dict[str, list[Step]] | None:
    """`lepton-ci init`: propose, write, say what comes next. Not None: run `lepton-ci run`
    now, adopting the steps init ran for each model named (their outputs are in place)."""
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
    return result.ran if run_now else None

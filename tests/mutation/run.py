"""Mutation testing of the modules that decide, with mutmut's mutation operators.

Each mutant is one small change to one decision module (a comparison flipped, a constant
off by one, a string emptied...). The module's own fast tests run against it in a scratch
copy of the project: a test that fails kills it; a mutant that every test survives is a
change the suite cannot see. mutmut (2.x) supplies the mutants; this script picks which
tests judge which module, bounds each run with a timeout, runs two at a time and prints
per-module killed/survived/timeout and the score.

    python tests/mutation/run.py                         # every mutant (minutes)
    python tests/mutation/run.py --sample 24 --seed 21 --floor 0.85  # what .ci/run runs
    python tests/mutation/run.py --module policy --show-survivors

Survivors that no test should kill (equivalent mutants, message wording) are listed with
the reason in tests/mutation/survivors.md; a survivor not listed there is printed as
"unexplained".
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import difflib
import functools
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SURVIVORS = Path(__file__).with_name("survivors.md")


@dataclass(frozen=True)
class Target:
    """A decision module, the functions of it that are mutated (all when empty), and the
    fast tests that judge it."""

    name: str
    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


TARGETS = [
    Target("gates", "lepton_ci/run/gates.py", ("tests/test_gates.py",)),
    Target("policy", "lepton_ci/versions/policy.py", ("tests/test_policy_check.py",)),
    Target("sticky", "lepton_ci/report/sticky.py", ("tests/test_sticky.py",)),
    Target(
        "cache-key", "lepton_ci/run/cache.py", ("tests/test_cache_key.py",), ("inputs_key", "key")
    ),
    Target(
        "deployer",
        "lepton_ci/deploy/deployer.py",
        ("tests/test_deployer.py", "tests/test_rollout_canary.py"),
    ),
    Target(
        "oci-upload",
        "lepton_ci/core/oci_client.py",
        # faults between client and registry, and a token that expires mid-upload
        (
            "tests/test_oci_faults.py",
            "tests/test_registry_auth.py",
            "-k",
            "not multi_arch",
        ),
        ("upload_blob", "_stream", "_upload_status", "_range_end", "_Pipe"),
    ),
    Target(
        "github",
        "lepton_ci/core/github.py",
        ("tests/test_github_client.py", "tests/test_watch_issues.py"),
    ),
    Target(
        "watch-judge",
        "lepton_ci/watch/slo.py",
        # the SLO verdicts against the real Prometheus, not the watch loop around them
        (
            "tests/test_watch_slo.py",
            "tests/test_watch.py",
            "-k",
            "query_slo_states or worst_series or psi or reference_shares or drift or lookback "
            "or evidence or malformed or shape or password or label_values or unreachable "
            "or both_bounds",
        ),
    ),
]


@dataclass
class Mutant:
    """One of mutmut's mutations of a module. Its mutated source is made on first use: a
    sample of a few dozen out of a thousand costs a few dozen mutations, not a thousand."""

    target: Target
    index: int  # position in mutmut's list for the module
    line: int
    mid: Any = field(repr=False)  # mutmut's RelativeMutationID
    original: str = field(repr=False)

    @functools.cached_property
    def source(self) -> str:
        from mutmut import Context, mutate

        c = Context(
            source=self.original, filename=self.target.path, dict_synonyms=[], mutation_id=self.mid
        )
        return str(mutate(c)[0])

    @functools.cached_property
    def change(self) -> tuple[str, str]:
        changed = [
            d
            for d in difflib.unified_diff(
                self.original.splitlines(), self.source.splitlines(), lineterm="", n=0
            )
            if d[:1] in "+-" and not d.startswith(("+++", "---"))
        ]
        before = " ".join(d[1:].strip() for d in changed if d[0] == "-")
        after = " ".join(d[1:].strip() for d in changed if d[0] == "+")
        return before, after

    @property
    def before(self) -> str:
        return self.change[0]

    @property
    def after(self) -> str:
        return self.change[1]

    @property
    def wording(self) -> bool:
        """Only `XX` added around a sentence (a string with a space: a message or hint, not a
        key, a path or a state): tests that look for its substance (a substring) cannot see
        it. survivors.md explains the class once."""
        wrapped = re.search(r"XX([^\"']*)XX", self.after)
        return bool(wrapped and " " in wrapped[1] and self.after.replace("XX", "") == self.before)

    @property
    def key(self) -> str:
        """Stable across edits elsewhere in the file: module, original line, mutated line.
        A `|` in the code (`float | None`) is written `\\|`, as a Markdown table cell needs."""
        before, after = (c.replace("|", "\\|") for c in self.change)
        return f"{self.target.name} | `{before}` | `{after}`"


def spans(source: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """1-based line spans of the named top-level functions, classes and methods."""
    out = []
    for node in ast.walk(ast.parse(source)):
        defines = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if defines and node.name in names:
            out.append((node.lineno, node.end_lineno or node.lineno))
    return out


def mutants(target: Target) -> list[Mutant]:
    from mutmut import Context, list_mutations

    source = (ROOT / target.path).read_text()
    keep = spans(source, target.functions) if target.functions else [(1, source.count("\n") + 1)]
    ctx = Context(source=source, filename=target.path, dict_synonyms=[])
    return [
        Mutant(target, i, mid.line_number + 1, mid, source)
        for i, mid in enumerate(list_mutations(ctx))
        if any(a <= mid.line_number + 1 <= b for a, b in keep)
    ]


def scratch_copy(into: Path) -> Path:
    """A copy of the project to mutate: the package, the tests and what they read."""
    skip = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.pyc", ".mypy_cache")
    skip_top = {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "mutants"}
    into.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name in skip_top:
            continue
        if entry.is_dir():
            shutil.copytree(entry, into / entry.name, ignore=skip, symlinks=True)
        else:
            shutil.copy2(entry, into / entry.name)
    return into


def run_tests(copy: Path, target: Target, timeout: float) -> tuple[str, float]:
    """killed, survived or timeout, and the seconds it took."""
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",  # a stale .pyc of the same size and second is no mutant
        "PYTHONPATH": str(copy),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    ]
    t0 = time.monotonic()
    # its own session: on a timeout the whole group goes, services the tests started included
    proc = subprocess.Popen(
        [*cmd, *target.tests],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", time.monotonic() - t0
    took = time.monotonic() - t0
    if proc.returncode == 0:
        return "survived", took
    if proc.returncode in (1, 3):  # tests failed, or an error inside pytest (import, fixture)
        return "killed", took
    # 2 interrupted, 4 usage, 5 nothing collected: the run proves nothing either way
    tail = out.decode(errors="replace")[-2000:]
    raise SystemExit(f"pytest exited {proc.returncode} for {target.name}:\n{tail}")


def explained() -> set[str]:
    """Keys of the survivors listed in survivors.md (table rows: module | before | after)."""
    return table_keys(SURVIVORS)


def table_keys(path: Path) -> set[str]:
    """Mutant keys in the `| module | before | after |` rows of a file (survivors.md, or a
    run's --show-survivors output)."""
    if not path.exists():
        return set()
    keys = set()
    for row in path.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        if len(cells) >= 3 and cells[1].startswith("`"):
            keys.add(" | ".join(cells[:3]))
    return keys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--module", action="append", help="only these targets (by name)")
    p.add_argument("--sample", type=int, default=0, help="mutate only N mutants, at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="seconds per mutant (default: 3x the clean run + 15)",
    )
    p.add_argument(
        "--budget", type=float, default=0, help="seconds: start no mutant after it (a partial run)"
    )
    p.add_argument("--floor", type=float, default=0.0, help="exit 1 when the score is below it")
    p.add_argument("--show-survivors", action="store_true", help="print explained ones too")
    p.add_argument(
        "--again", type=Path, help="run only the mutants listed in this file (a run's survivors)"
    )
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = p.parse_args(argv)

    known = {t.name: t for t in TARGETS}
    unknown = set(args.module or ()) - set(known)
    if unknown:
        p.error(f"unknown module {', '.join(sorted(unknown))}; one of {', '.join(known)}")
    targets = [known[n] for n in args.module] if args.module else TARGETS
    every = [m for t in targets for m in mutants(t)]
    chosen = list(every)
    if args.again:
        wanted = table_keys(args.again)
        chosen = [m for m in every if m.key in wanted]
    if args.sample and args.sample < len(every):
        pick = random.Random(args.seed)  # noqa: S311 (a sample, not a secret)
        chosen = sorted(pick.sample(every, args.sample), key=lambda m: (m.target.path, m.index))
    if args.budget:  # a run that may stop early: in random order, so its score is a sample
        random.Random(args.seed).shuffle(chosen)  # noqa: S311
    if args.list:
        for m in chosen:
            print(f"{m.target.path}:{m.line}: {m.before}  ->  {m.after}")
        return 0
    print(f"{len(chosen)} of {len(every)} mutants, {args.jobs} at a time", flush=True)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lepton-mutation-") as tmp:
        copies: queue.Queue[Path] = queue.Queue()
        for j in range(args.jobs):
            copies.put(scratch_copy(Path(tmp) / f"w{j}"))

        # A clean run per module first: a failing suite kills every mutant and proves nothing.
        def clean(t: Target) -> tuple[Target, str, float]:
            copy = copies.get()
            try:
                return (t, *run_tests(copy, t, 600))
            finally:
                copies.put(copy)

        limits: dict[str, float] = {}
        modules = sorted({m.target for m in chosen}, key=TARGETS.index)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for t, verdict, took in pool.map(clean, modules):
                if verdict != "survived":
                    print(
                        f"{t.name}: its tests fail without any mutant ({verdict})", file=sys.stderr
                    )
                    return 2
                limits[t.name] = args.timeout or 3 * took + 15
                print(
                    f"  {t.name}: clean run {took:.1f}s, timeout {limits[t.name]:.0f}s", flush=True
                )

        def one(m: Mutant) -> tuple[Mutant, str]:
            if args.budget and time.monotonic() - t0 > args.budget:
                return m, "not run"
            try:  # mutmut can make a mutant that does not compile (`*x` -> `/x`): no mutant
                compile(m.source, m.target.path, "exec")
            except SyntaxError:
                return m, "invalid"
            copy = copies.get()
            path = copy / m.target.path
            original = path.read_text()
            try:
                path.write_text(m.source)
                verdict, _ = run_tests(copy, m.target, limits[m.target.name])
            finally:
                path.write_text(original)
                copies.put(copy)
            return m, verdict

        results: list[tuple[Mutant, str]] = []
        invalid = 0
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for n, (m, verdict) in enumerate(pool.map(one, chosen), 1):
                if verdict in ("not run", "invalid"):
                    invalid += verdict == "invalid"
                    continue
                results.append((m, verdict))
                if verdict != "killed":
                    print(
                        f"  [{n}/{len(chosen)}] {verdict}: {m.target.path}:{m.line}: "
                        f"{m.before}  ->  {m.after}",
                        flush=True,
                    )
    if invalid:
        print(f"\n{invalid} mutant(s) do not compile: not counted")
    if len(results) + invalid < len(chosen):
        left = len(chosen) - len(results) - invalid
        print(f"\nbudget spent: {left} mutants not run (a partial score)")
    return report(results, targets, time.monotonic() - t0, args)


def report(
    results: list[tuple[Mutant, str]], targets: list[Target], took: float, args: argparse.Namespace
) -> int:
    ok = explained()
    print(
        f"\n{'module':<12} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} {'score':>6}"
    )
    for t in targets:
        mine = [v for m, v in results if m.target is t]
        if not mine:
            continue
        k, to, s = mine.count("killed"), mine.count("timeout"), mine.count("survived")
        print(f"{t.name:<12} {len(mine):>7} {k:>7} {to:>7} {s:>8} {(k + to) / len(mine):>6.1%}")
    total = len(results)
    detected = sum(v != "survived" for _, v in results)
    score = detected / total if total else 1.0
    print(
        f"{'all':<12} {total:>7} {detected:>15} {total - detected:>8} {score:>6.1%}  ({took:.0f}s)"
    )
    survivors = [m for m, v in results if v == "survived"]
    unexplained = [m for m in survivors if m.key not in ok and not m.wording]
    wording = sum(m.wording for m in survivors)
    if wording:
        print(f"\n{wording} survivor(s) only wrap a message in XX (see survivors.md, Wording)")
    if args.show_survivors and survivors:
        print("\nsurvivors (module | before | after):")
        for m in survivors:
            why = "wording" if m.wording else "explained" if m.key in ok else "UNEXPLAINED"
            print(f"| {m.key} | {why} |")
    if unexplained:
        print(f"\n{len(unexplained)} survivor(s) not explained in {SURVIVORS.relative_to(ROOT)}:")
        for m in unexplained:
            print(f"| {m.key} |")
    if score < args.floor:
        print(f"\nmutation score {score:.1%} is under the floor {args.floor:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

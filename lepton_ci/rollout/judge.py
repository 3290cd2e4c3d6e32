"""The watch SLOs judged per revision: the candidate's series against the serving revision's.

Both come from the same Prometheus series, told apart by the `revision` label the pods are
scraped with (podman: the target file lepton-ci writes; Kubernetes: the pod label
`dev.lepton-ci/revision`). Each SLO query gets a `revision="N"` matcher in every one of its
vector selectors. Where to put it is found by a PromQL tokenizer (strings, comments, label
lists of `by`/`on`, function calls and durations are told apart, never matched by a pattern
over the text); where the `promql-parser` package is installed, the result is parsed and
checked selector by selector against the original before it is sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from lepton_ci.core.config import SLO
from lepton_ci.core.errors import LeptonError, WatchError
from lepton_ci.core.prometheus import Prometheus
from lepton_ci.core.revisions import DRIFT_LATER
from lepton_ci.rollout.canary import SloResult

LABEL = "revision"
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Words that are never a metric name where they stand: operators, modifiers, aggregations.
_KEYWORDS = {
    "and", "or", "unless", "bool", "atan2", "offset", "inf", "nan",
    "sum", "avg", "count", "min", "max", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "group", "limitk", "limit_ratio",
}  # fmt: skip
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


class PromQLError(LeptonError):
    """An SLO query could not be split by revision."""


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, braces, range, string, number, op
    text: str
    start: int
    end: int


def _tokens(q: str) -> Iterator[_Token]:
    i, n = 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and q[i] != "\n":
                i += 1
        elif c in "\"'`":
            j = _string_end(q, i)
            yield _Token("string", q[i:j], i, j)
            i = j
        elif c in "{[":
            close = "}" if c == "{" else "]"
            j = i + 1
            while j < n and q[j] != close:
                j = _string_end(q, j) if q[j] in "\"'`" else j + 1
            if j >= n:
                raise PromQLError(f"unclosed `{c}` in {q!r}")
            yield _Token("braces" if c == "{" else "range", q[i : j + 1], i, j + 1)
            i = j + 1
        elif c.isalpha() or c in "_:":
            j = i
            while j < n and (q[j].isalnum() or q[j] in "_:"):
                j += 1
            yield _Token("ident", q[i:j], i, j)
            i = j
        elif c.isdigit() or (c == "." and i + 1 < n and q[i + 1].isdigit()):
            j = i
            while j < n and (q[j].isalnum() or q[j] in "._" or (q[j] in "+-" and q[j - 1] in "eE")):
                j += 1
            yield _Token("number", q[i:j], i, j)
            i = j
        else:
            yield _Token("op", c, i, i + 1)
            i += 1


def _string_end(q: str, i: int) -> int:
    quote, j = q[i], i + 1
    while j < len(q) and q[j] != quote:
        j += 2 if q[j] == "\\" and quote != "`" else 1
    if j >= len(q):
        raise PromQLError(f"unclosed string in {q!r}")
    return j + 1


def with_label(query: str, value: str, label: str = LABEL) -> str:
    """`query` with `label="value"` in every vector selector."""
    if not value.isdigit():
        raise PromQLError(f"revision label value {value!r} is not a number")
    matcher = f'{label}="{value}"'
    toks = list(_tokens(query))
    inserts: list[tuple[int, str]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "ident" and t.text.lower() in _LABEL_LISTS:  # keywords ignore case
            if nxt is not None and nxt.text == "(":  # skip `by (a, b)`
                i += 2
                while i < len(toks) and toks[i].text != ")":
                    i += 1
            i += 1
            continue
        if t.kind == "ident" and not (
            t.text.lower() in _KEYWORDS or (nxt is not None and nxt.text == "(")
        ):
            if nxt is not None and nxt.kind == "braces" and nxt.start == t.end:
                inserts.append(_into(nxt, matcher, label, query))
                i += 2
            else:
                inserts.append((t.end, "{" + matcher + "}"))
                i += 1
            continue
        if t.kind == "braces":  # a selector by matchers alone: {__name__=~"..."}
            inserts.append(_into(t, matcher, label, query))
        i += 1
    if not inserts:
        raise PromQLError(f"no series selector in {query!r}")
    out = query
    for at, text in sorted(inserts, reverse=True):
        out = out[:at] + text + out[at:]
    _verify(query, out, label, value)
    return out


def _into(braces: _Token, matcher: str, label: str, query: str) -> tuple[int, str]:
    if label in _matcher_names(braces.text[1:-1]):
        raise PromQLError(
            f"the query {query!r} already selects by `{label}`: it cannot be judged per revision",
            hint=f"drop the `{label}` matcher from the SLO query",
        )
    inner = braces.text[1:-1].strip()
    sep = "" if not inner or inner.endswith(",") else ","
    return braces.end - 1, sep + matcher


def _matcher_names(inner: str) -> set[str]:
    """The label names of a selector's matchers (`a="x", "b"=~"y"`: a, b), strings skipped,
    so the check does not wait for the optional parser."""
    names, start, i = set(), 0, 0
    parts = []
    while i < len(inner):
        if inner[i] in "\"'`":
            i = _string_end(inner, i)
            continue
        if inner[i] == ",":
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    parts.append(inner[start:])
    for part in parts:
        part = part.strip()
        if part[:1] in ('"', "'", "`"):
            end = _string_end(part, 0)
            name, rest = part[1 : end - 1], part[end:]
        else:
            name = part[: len(part) - len(part.lstrip("_:" + _ALNUM))]
            name, rest = part[: len(name)], part[len(name) :]
        if rest.strip()[:1] in ("=", "!"):  # a matcher, not `{"metric"}` alone
            names.add(name)
    return names


def _verify(before: str, after: str, label: str, value: str) -> None:
    """Parse both and check every selector gained exactly the matcher, and nothing else
    changed; skipped where the parser is not installed."""
    try:
        import promql_parser as pp
    except ImportError:
        return

    def selectors(q: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
        found: list[tuple[str, list[tuple[str, str, str]]]] = []

        def visit(node: object) -> None:
            if isinstance(node, pp.VectorSelector):
                ms = node.matchers
                if ms.or_matchers:
                    raise PromQLError(f"`or` inside a selector is not supported: {q!r}")
                found.append(
                    (str(node.name), sorted((str(m.op), m.name, m.value) for m in ms.matchers))
                )

        try:
            pp.walk(pp.parse(q), pre_visit=visit)
        except (ValueError, TypeError) as e:
            raise PromQLError(f"not PromQL: {q!r}: {e}") from None
        return found

    old, new = selectors(before), selectors(after)
    eq = str(pp.MatchOp.Equal)
    for (name, was), (name2, now) in zip(old, new, strict=False):
        if any(m[1] == label for m in was):
            raise PromQLError(
                f"the query {before!r} already selects by `{label}`: it cannot be judged per "
                "revision",
                hint=f"drop the `{label}` matcher from the SLO query",
            )
        if name != name2 or now != sorted([*was, (eq, label, value)]):
            break
    else:
        if len(old) == len(new):
            return
    raise PromQLError(f"could not add {label}={value!r} to every selector of {before!r}")


class RevisionJudge:
    """The environment's `watch.slos`, each evaluated for the candidate and the serving
    revision; a candidate out of its bounds is a breach (the serving value is the evidence
    beside it). `no-data` and errors are said and never a breach, as in `watch`."""

    def __init__(self, prometheus: Prometheus, slos: list[SLO], label: str = LABEL) -> None:
        self.prometheus, self.slos, self.label = prometheus, slos, label

    def __call__(self, canary: str, stable: str) -> list[SloResult]:
        self.prometheus.unreachable = None
        return [self._one(s, canary, stable) for s in self.slos]

    def _one(self, slo: SLO, canary: str, stable: str) -> SloResult:
        if slo.query is None:
            return SloResult(
                slo=slo.name,
                status="no-data",
                detail=DRIFT_LATER,
            )
        bound = " ".join(
            p
            for p in (
                f">= {slo.min:g}" if slo.min is not None else "",
                f"<= {slo.max:g}" if slo.max is not None else "",
            )
            if p
        )
        if self.prometheus.unreachable is not None:  # said once, not waited out per SLO
            return SloResult(
                slo=slo.name,
                status="error",
                bound=bound,
                detail=self.prometheus.unreachable.message,
            )
        try:
            ours = self._value(slo, with_label(slo.query, canary, self.label))
            theirs = self._value(slo, with_label(slo.query, stable, self.label))
        except (PromQLError, WatchError) as e:
            return SloResult(slo=slo.name, status="error", bound=bound, detail=e.message)
        if ours is None:
            return SloResult(
                slo=slo.name,
                status="no-data",
                stable=_shown(theirs),
                bound=bound,
                detail="no series of the canary yet",
            )
        ok = (slo.max is None or ours <= slo.max) and (slo.min is None or ours >= slo.min)
        return SloResult(
            slo=slo.name,
            status="ok" if ok else "breach",
            canary=_shown(ours),
            stable=_shown(theirs),
            bound=bound,
        )

    def _value(self, slo: SLO, query: str) -> float | None:
        values = [s.value for s in self.prometheus.query(query)]
        if not values:
            return None
        if slo.max is not None and slo.min is not None:
            return max(values, key=lambda v: max(v - slo.max, slo.min - v))  # type: ignore[operator]
        return max(values) if slo.max is not None else min(values)


def _shown(v: float | None) -> float | str | None:
    if v is not None and math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v

"""Property-based tests: any input loads or fails with a clear error (never an internal one),
and rendered output never carries a live mention, a workflow command, a fence break-out or a
control character."""

import contextlib
import json
import re
import string
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton_ci.core import config, escape
from lepton_ci.core.errors import ConfigError, InputError
from lepton_ci.core.record import CacheInfo, Environment, GitInfo, Record
from lepton_ci.report import comment
from lepton_ci.run import diffview, gates
from lepton_ci.run.metrics import read_metrics, read_params
from lepton_ci.versions import grammar, message

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text a hostile PR might use: workflow commands, fences, mentions, bidi, control characters.
PIECES = st.sampled_from(
    ["::", "::add-mask::", "::error::", "##[", "```", "`", "@", "@octocat", "#12", "\n", "\r",
     "\u202e", "\u2066", "\x00", "\x1b[31m", "\u2028", "<script>", "|", "[x](http://e)", " ",
     "{", "}", message.BEGIN, message.END, "-----BEGIN PGP SIGNATURE-----", "%0A"]
)  # fmt: skip
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=12).map("".join)

INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LIVE_MENTION = re.compile(r"@[A-Za-z0-9_-]")
LIVE_ISSUE = re.compile(r"#\d")


def _no_invisible(text: str) -> None:
    assert not INVISIBLE.search(text.replace("\n", "").replace("\t", "")), repr(text)


# -- escapers -----------------------------------------------------------------------------------


@FUZZ
@given(HOSTILE)
def test_log_text_never_starts_a_workflow_command(value):
    out = escape.log_text(value)
    _no_invisible(out)
    for line in out.split("\n"):
        assert not line.lstrip().startswith("::"), repr(line)
    assert "##[" not in out


@FUZZ
@given(HOSTILE)
def test_markdown_escapers_leave_nothing_live(value):
    for render in (escape.md_text, escape.md_cell):
        out = render(value)
        _no_invisible(out)
        assert not LIVE_MENTION.search(out) and not LIVE_ISSUE.search(out)
        assert "<" not in out.replace("<br>", "") and "](" not in out.replace("\\](", "")
    assert "\n" not in escape.md_cell(value)
    code = escape.md_code(value)
    _no_invisible(code)
    fence = re.match(r"`+", code)
    assert fence and "\n" not in code
    inner = code[len(fence[0]) : -len(fence[0])]
    assert fence[0] not in inner  # no backtick run inside can close the span early


@FUZZ
@given(HOSTILE)
def test_fences_hold_and_labels_and_html_stay_inert(value):
    block = escape.md_fence(value)
    first, *body, last = block.split("\n")
    assert first == last and all(not ln.startswith(first) for ln in body)
    label = escape.mermaid_label(value)
    assert re.fullmatch(r"[\w .,:/%+\-=]*", label) and len(label) <= 80
    _no_invisible(label)
    html = escape.html_text(value)
    assert "<" not in html and '"' not in html
    _no_invisible(html)


# -- tag grammar and the record delimiter ------------------------------------------------------

NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,6}(/[a-z0-9-]{1,4})?[a-z0-9]\Z")


@FUZZ
@given(st.text(max_size=60))
def test_any_tag_name_parses_or_is_not_ours(name):
    parsed = grammar.parse(name)
    assert parsed is None or name.startswith(parsed.model)


@FUZZ
@given(NAME, st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), NAME, st.integers(1, 999))
def test_tag_names_we_write_read_back(model, major, minor, patch, stage, counter):
    from lepton_ci.core.semver import Version

    v = Version.parse(f"{major}.{minor}.{patch}")
    parsed = grammar.parse(grammar.version_tag(model, v))
    assert parsed and (parsed.model, parsed.action, parsed.version) == (
        model,
        grammar.Action.REGISTER,
        str(v),
    )
    parsed = grammar.parse(grammar.stage_tag(model, stage, counter))
    assert parsed and (parsed.model, parsed.stage, parsed.counter) == (model, stage, counter)


def _record(metrics: dict[str, float], subject: str = "s") -> Record:
    return Record(
        model="toy",
        created_at="2026-01-01T00:00:00+00:00",
        git=GitInfo(sha="0" * 40, commit_time=0, subject=subject),
        metrics=metrics,
        environment=Environment(
            python="3.11.0", platform="linux", packages_digest="d", packages_source="installed"
        ),
        cache=CacheInfo(key="k"),
        gates=gates.evaluate(metrics, None, {}),
    )


METRICS = st.dictionaries(HOSTILE, st.floats(allow_nan=False, allow_infinity=False), max_size=4)


@FUZZ
@given(HOSTILE, METRICS)
def test_the_record_survives_any_subject_and_metric_names(subject, metrics):
    rec = _record(metrics, subject)
    text = message.compose(f"Register toy@v1.0.0: {subject}", rec)
    assert message.extract(text, "t") == rec
    signed = text + "-----BEGIN SSH SIGNATURE-----\nxyz\n-----END SSH SIGNATURE-----\n"
    assert message.extract(signed, "t") == rec


@FUZZ
@given(st.one_of(HOSTILE, st.text()))
def test_any_tag_message_is_a_record_nothing_or_foreign(text):
    try:
        found = message.extract(text, "t")
    except message.ForeignMessage as e:
        assert e.message.startswith("tag t")
    else:
        assert found is None or isinstance(found, Record)


# -- loading config, params and metrics --------------------------------------------------------

SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    HOSTILE,
)
TREE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(HOSTILE, SCALAR), inner, max_size=4)
    ),
    max_leaves=20,
)
CONFIG_WORDS = st.sampled_from(
    ["models", "stages", "train", "metrics", "gates", "requires", "toy", "prod", "direction",
     "min", "deploy", "environments", "version", "&a", "*a", "<<", "{", "[", ":", "- ", "\n",
     "  ", "'", '"', "\t", "\\", "!!python/object", "%YAML 1.1", "---", "1e999", "\xff"]
)  # fmt: skip
YAML_SOUP = st.lists(st.one_of(CONFIG_WORDS, st.text(string.printable, max_size=5))).map("".join)


def _tree_text(tree: object) -> str:
    try:
        return yaml.safe_dump(tree, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return json.dumps(tree, default=str)


@FUZZ
@given(st.one_of(YAML_SOUP, TREE.map(_tree_text), st.binary(max_size=80).map(bytes.hex)))
def test_any_config_loads_or_fails_with_a_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "lepton.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config.load(p)
        except ConfigError as e:
            assert str(p) in e.message or "lepton.yaml" in e.message


@FUZZ
@given(st.binary(max_size=120))
def test_any_bytes_as_config_or_metrics_fail_cleanly(data):
    with tempfile.TemporaryDirectory() as d:
        for name, read, err in (
            ("lepton.yaml", config.load, ConfigError),
            ("m.json", lambda p: read_metrics([p]), InputError),
            ("m.yaml", lambda p: read_metrics([p]), InputError),
        ):
            p = Path(d) / name
            p.write_bytes(data)
            with contextlib.suppress(err):
                read(p)


@FUZZ
@given(TREE, st.sampled_from(["m.json", "m.yaml"]))
def test_metric_flattening_gives_finite_numbers_or_a_clear_error(tree, name):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        try:
            text = json.dumps(tree) if name.endswith(".json") else _tree_text(tree)
        except (ValueError, TypeError):
            return
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            metrics = read_metrics([p])
        except InputError as e:
            assert str(p) in e.message or "metric" in e.message
        else:
            assert all(isinstance(v, float) and abs(v) < float("inf") for v in metrics.values())
        with contextlib.suppress(InputError):
            read_params([p])


# -- rendered reports ---------------------------------------------------------------------------


@settings(FUZZ, max_examples=30)  # a full template render per example
@given(METRICS)
def test_reports_with_hostile_metric_names_stay_inert(metrics):
    rec = _record(metrics)
    meta = comment.BundleMeta(model="toy", workflow="ci", head_sha="0" * 40)
    for body in (comment.render(rec, meta).body, diffview.as_markdown(rec)):
        _no_invisible(body)
        assert not LIVE_MENTION.search(body) and not LIVE_ISSUE.search(body)
        assert "<script" not in body
    table = escape.log_text(diffview.as_table(rec))
    assert not any(line.lstrip().startswith("::") for line in table.split("\n"))


@settings(FUZZ, max_examples=25)  # each example runs git
@given(st.one_of(YAML_SOUP, TREE.map(_tree_text)))
def test_the_command_line_never_exits_70_on_any_config(text):
    from lepton_ci.cli import main

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / ".git").mkdir()  # the config search stops here; git itself finds no repo
        (Path(d) / "lepton.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        assert main(["-C", d, "register"]) == 1

"""Property-based tests: any input loads or fails with a clear error (never an internal one),
and rendered output never carries a live mention, a workflow command, a fence break-out or a
control character."""

import contextlib
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton_ci import gha_entry
from lepton_ci.core import config, escape
from lepton_ci.core.errors import ConfigError, InputError
from lepton_ci.core.record import CacheInfo, Environment, GitInfo, Record
from lepton_ci.report import comment
from lepton_ci.run import diffview, gates
from lepton_ci.run.metrics import read_metrics, read_params
from lepton_ci.versions import grammar, message
from tests.support.fuzz import (
    EVENT_FILE,
    FUZZ,
    HOSTILE,
    PAYLOAD,
    SCALAR,
    TREE,
    YAML_SOUP,
    json_bytes,
    tree_text,
)

pytestmark = pytest.mark.unit

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


@FUZZ
@given(st.one_of(YAML_SOUP, TREE.map(tree_text), st.binary(max_size=80).map(bytes.hex)))
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
            text = json.dumps(tree) if name.endswith(".json") else tree_text(tree)
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


# -- version strings ----------------------------------------------------------------------------

VERSION_PIECES = st.sampled_from(
    ["v", "V", "0", "1", "01", "9", ".", "-", "+", "rc", "a", "\u0661", "\uff11", "\n", " ",
     "_", "\u00b2", "x" * 40]
)  # fmt: skip
VERSIONISH = st.one_of(
    st.text(max_size=30),
    st.lists(VERSION_PIECES, max_size=12).map("".join),
    st.from_regex(
        r"\Av?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9A-Za-z.-]{0,9})?(\+[\w.-]{0,9})?\Z"
    ),
)


@FUZZ
@given(VERSIONISH)
def test_any_version_string_is_a_semantic_version_or_a_registry_error(text):
    from lepton_ci.core.errors import RegistryError
    from lepton_ci.core.semver import IMAGE_TAG_RE, Version, image_tag

    try:
        v = Version.parse(text)
    except RegistryError as e:
        assert "is not a semantic version" in e.message
        return
    assert text.strip().isascii(), text  # `1\u0661.0.0` was read as v11.0.0
    assert Version.parse(str(v)) == v and str(v).lstrip("v") == text.strip().lstrip("v")
    assert v.sort_key() == Version.parse(str(v)).sort_key()
    try:
        tag = image_tag(text)
    except RegistryError as e:
        assert "128 characters" in e.message
    else:
        assert IMAGE_TAG_RE.fullmatch(tag) and "+" not in tag
    for ref in (f"m@{text}", f"m@v{text}", f"m#{text}", text):
        found = grammar.shortcut(ref)
        assert found is None or found.version is None or Version.is_valid(found.version)
        parsed = grammar.parse(ref)
        assert parsed is None or parsed.version is None or Version.is_valid(parsed.version)


# -- Prometheus answers -------------------------------------------------------------------------

PROM_VALUE = st.one_of(
    st.sampled_from(["1", "0.5", "+Inf", "-Inf", "NaN", "1e3", "-0", "1_000", " 5", "\u0661",
                     "infinity", "0x10", "", "1.", ".5"]),
    st.floats().map(repr),
    SCALAR,
)  # fmt: skip
PROM_PAIR = st.one_of(st.tuples(st.floats(), PROM_VALUE).map(list), TREE)
PROM_SAMPLE = st.one_of(
    st.fixed_dictionaries(
        {"metric": st.dictionaries(HOSTILE, HOSTILE, max_size=3) | TREE, "value": PROM_PAIR}
    ),
    TREE,
)
PROM_BODY = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["success", "error"]) | SCALAR,
        "data": st.fixed_dictionaries(
            {
                "resultType": st.sampled_from(["vector", "scalar", "matrix", "string"]) | SCALAR,
                "result": st.one_of(st.lists(PROM_SAMPLE, max_size=4), PROM_PAIR),
            }
        )
        | TREE,
    },
    optional={"error": TREE, "errorType": SCALAR, "warnings": TREE},
)


PROM_ANSWER = st.one_of(
    PROM_BODY.map(json_bytes),
    TREE.map(json_bytes),
    st.binary(max_size=100),
    st.sampled_from([b"[" * 100_000, b'{"a":' * 5_000, b"<!doctype html><p>Sign in", b""]),
)


class _Canned:
    """Stands in for the HTTP exchange only: what is tested is everything after it."""

    answer: tuple[int, str, bytes] = (200, "", b"")

    def _get(self, where, expr, at=None):
        from lepton_ci.core.prometheus import _Answer

        return _Answer(*self.answer)


def _canned(status: int, content_type: str, body: bytes):
    from lepton_ci.core.prometheus import Prometheus

    class Canned(_Canned, Prometheus):
        pass

    prom = Canned("http://127.0.0.1:9", retries=0, sleep=lambda s: None)
    prom.answer = (status, content_type, body)
    return prom


@FUZZ
@given(
    st.sampled_from([200, 400, 401, 404, 422, 500, 502, 503]),
    st.sampled_from(["application/json", "text/html; charset=utf-8", ""]),
    PROM_ANSWER,
)
def test_any_prometheus_answer_is_numbers_or_a_watch_error(status, content_type, body):
    from lepton_ci.core.errors import WatchError

    prom = _canned(status, content_type, body)
    try:
        samples = prom.query("up")
    except WatchError as e:
        assert e.message and len(e.message) < 1000, e.message
        assert not (status == 200 and "refused" in e.message and b'"status"' not in body)
        return
    assert status < 500  # a 5xx is never a set of numbers to judge
    for s in samples:
        assert isinstance(s.value, float) and not math.isnan(s.value)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in s.labels.items())


@FUZZ
@given(PROM_BODY.map(json_bytes), st.dictionaries(HOSTILE, st.floats(), max_size=3))
def test_any_prometheus_answer_evaluates_to_one_of_four_states(body, reference):
    """The whole SLO judgement past the HTTP exchange, bounded and drift: one of four states,
    one printable line, JSON that parses; never an exception."""
    from lepton_ci.core.config import SLO
    from lepton_ci.core.printer import to_json
    from lepton_ci.watch import slo

    for spec in (
        {"name": "b", "query": "up", "max": 0.5, "min": 0.1},
        {"name": "d", "drift": {"metric": "m", "max_psi": 0.2, "min_predictions": 1}},
    ):
        ev = slo.evaluate(
            _canned(200, "application/json", body), SLO.model_validate(spec), reference
        )
        assert ev.status in ("ok", "breach", "no-data", "error")
        assert "\n" not in ev.text()
        json.loads(to_json(ev.as_dict()))
        assert ev.status != "breach" or ev.value is not None


# -- GitHub payloads ----------------------------------------------------------------------------


def _event_env(d: str, data: bytes, **extra: str) -> dict[str, str]:
    path = Path(d) / "event.json"
    path.write_bytes(data)
    return {"GITHUB_EVENT_PATH": str(path), **extra}


@FUZZ
@given(
    EVENT_FILE,
    st.one_of(st.text(max_size=20), st.text(min_size=195, max_size=240)),  # no bound on GitHub
    st.one_of(st.from_regex(r"\A[0-9]{1,12}\Z"), st.text(max_size=12)),
    st.text(max_size=30),
)
def test_any_event_file_and_run_variables_give_bundle_facts(data, workflow, run_id, repo):
    from lepton_ci.core import gha
    from lepton_ci.image.operations import load_event as image_event
    from lepton_ci.report import publish

    with tempfile.TemporaryDirectory() as d:
        env = _event_env(
            d, data, GITHUB_WORKFLOW=workflow, GITHUB_RUN_ID=run_id, GITHUB_REPOSITORY=repo
        )
        event = gha.load_event(env)
        assert isinstance(event, dict) and image_event is gha.load_event
        sha = gha.pr_head_sha(event)
        assert sha is None or re.fullmatch("[0-9a-f]{40}", sha)
        number = gha.pr_number(event)
        assert number is None or (type(number) is int and number > 0)
        assert isinstance(publish._is_fork(event), bool)
        meta = publish.meta_from_env(env, _record({}), None)  # a valid BundleMeta, or a crash
        assert meta.pr == number and len(meta.workflow) <= 200


@FUZZ
@given(PAYLOAD, PAYLOAD, st.sampled_from(["a" * 40, "0" * 40]))
def test_any_workflow_run_and_pull_payload_is_trusted_or_refused(event, pull, sha):
    from lepton_ci.core.errors import RecordError
    from lepton_ci.report import publish

    meta = comment.BundleMeta(model="toy", workflow="ci", head_sha=sha, pr=1)
    event, pull = (x if isinstance(x, dict) else {} for x in (event, pull))
    try:
        publish.check_bundle_source(event, pull, meta, 1)
    except RecordError as e:
        assert "refusing to post" in e.message
    else:  # trusted only when GitHub's PR names the bundle's commit
        assert pull["head"]["sha"] == sha


# What sticky.py writes in its comments, which anyone who can comment can write too.
META_LINE = st.fixed_dictionaries(
    {},
    optional={
        "sha": st.sampled_from(["a" * 40, "0" * 40]) | SCALAR,
        "run": SCALAR | PAYLOAD,
        "digest": SCALAR,
    },
)


@FUZZ
@given(
    st.one_of(
        HOSTILE,
        st.one_of(PAYLOAD, META_LINE).map(
            lambda t: "<!-- lepton-ci:meta " + json.dumps(t, default=str) + " -->"
        ),
    ),
    st.sampled_from(["a" * 40, "0" * 40, None]),
    st.integers(0, 10**6),
)
def test_any_comment_text_someone_wrote_is_read_as_a_meta_line_or_nothing(body, head, run):
    from lepton_ci.report import sticky

    old = comment.parse_meta(body)
    assert isinstance(old, dict)
    ours = comment.BundleMeta(model="toy", workflow="ci", head_sha="a" * 40, run_id=run)
    assert isinstance(sticky._older(ours, old, head), bool)


@FUZZ
@given(
    st.sampled_from([*sorted(gha_entry.STEPS), "nope"]),
    st.dictionaries(
        st.sampled_from(
            ["model", "version", "push", "once", "issue", "no-cache", "fail-on-gate",
             "environment", "working-directory", "config", "stage", "dry-run"]
        ),
        st.one_of(HOSTILE, st.sampled_from(["true", "false", "", " true ", "yes", "-x"])),
    ),
)  # fmt: skip
def test_any_action_inputs_become_argv_or_a_config_error(step, inputs):
    env = {gha_entry.env_name(k): v for k, v in inputs.items()}
    try:
        argv = gha_entry.argv(step, env)
    except ConfigError as e:
        assert f"`{step}`" in e.message
    else:
        assert step in argv and all(isinstance(a, str) for a in argv)


@settings(FUZZ, max_examples=50)
@given(PAYLOAD, PAYLOAD)
def test_any_bundle_from_an_untrusted_run_is_read_or_refused(meta, rec_change):
    from lepton_ci.core.errors import RecordError

    good = _record({"accuracy": 0.9})
    with tempfile.TemporaryDirectory() as d:
        bundle = Path(d)
        record = json.loads(good.to_json())
        if isinstance(rec_change, dict):
            record.update(rec_change)
        (bundle / "record.json").write_bytes(json_bytes(record))
        (bundle / "meta.json").write_bytes(json_bytes(meta))
        try:
            rec, got = comment.read_bundle(bundle)
        except RecordError as e:
            assert str(bundle) in e.message
        else:
            assert got.model == rec.model

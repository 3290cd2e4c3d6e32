"""Strategies for property-based tests: hostile text, any YAML/JSON tree, YAML soup, GitHub
payloads. Shared by the parser-level (test_fuzz.py) and command-line (test_fuzz_cli.py) tests."""

import json
import string

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lepton_ci.versions import message

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text a hostile PR might use: workflow commands, fences, mentions, bidi, control characters.
PIECES = st.sampled_from(
    ["::", "::add-mask::", "::error::", "##[", "```", "`", "@", "@octocat", "#12", "\n", "\r",
     "\u202e", "\u2066", "\x00", "\x1b[31m", "\u2028", "<script>", "|", "[x](http://e)", " ",
     "{", "}", message.BEGIN, message.END, "-----BEGIN PGP SIGNATURE-----", "%0A"]
)  # fmt: skip
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=12).map("".join)

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


def tree_text(tree: object) -> str:
    try:
        return yaml.safe_dump(tree, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return json.dumps(tree, default=str)


def json_bytes(tree: object) -> bytes:
    return json.dumps(tree, default=str).encode("utf-8", "surrogatepass")


GH_KEYS = st.sampled_from(
    ["pull_request", "number", "head", "base", "repo", "sha", "full_name", "fork",
     "workflow_run", "head_sha", "head_repository", "event", "id", "run", "digest"]
)  # fmt: skip
GH_LEAF = st.one_of(SCALAR, st.just("a" * 40), st.just("0" * 40), st.just("acme/models"))
PAYLOAD = st.recursive(
    GH_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(GH_KEYS, HOSTILE), inner, max_size=4)
    ),
    max_leaves=16,
)
EVENT_FILE = st.one_of(
    PAYLOAD.map(json_bytes),
    st.binary(max_size=60),
    st.sampled_from([b"[" * 100_000, b"\xff\xfe{}", b"null"]),
)

import pytest

from lepton_ci.core.escape import ZWSP, html_text, md_cell, md_code, md_text, mermaid_label
from lepton_ci.core.templating import url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("plain 0.97 (x)", "plain 0.97 (x)"),
        ("a|b", "a\\|b"),
        ("[x](http://e)", "\\[x\\](http://e)"),
        ("<b>hi</b>", "&lt;b>hi&lt;/b>"),
        ("scikit-learn 1.9.1 -> 1.6.1", "scikit-learn 1.9.1 -> 1.6.1"),
        ("> quote\n>> nested", "\\> quote\n\\>> nested"),
        ("*em* _u_ ~s~ `c`", "\\*em\\* \\_u\\_ \\~s\\~ \\`c\\`"),
        ("@user", f"@{ZWSP}user"),
        ("see #42", f"see #{ZWSP}42"),
        ("# title", "\\# title"),
        ("a\n- b\n1. c\n> d", "a\n\\- b\n1\\. c\n\\> d"),
        ("-0.5", "-0.5"),
    ],
)
def test_md_text(raw, want):
    assert md_text(raw) == want


def test_md_cell_has_no_newlines_or_bare_pipes():
    assert md_cell("a|b\nc") == "a\\|b<br>c"


def test_md_code_cannot_be_closed_early():
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x`") == "`` `x` ``"


def test_mermaid_label_whitelist():
    assert mermaid_label('acc"] --> X[evil') == "acc__ --_ X_evil"
    assert mermaid_label("v1.2.3 this PR") == "v1.2.3 this PR"
    assert len(mermaid_label("x" * 500)) == 80


def test_url_filter_only_passes_plain_http_links():
    assert url("https://github.com/a/b/actions/runs/1") == "https://github.com/a/b/actions/runs/1"
    assert url("javascript:alert(1)") == ""
    assert url("https://e.example/x) [y](https://evil") == ""
    assert url(None) == ""


def test_bidi_controls_cannot_reorder_what_a_reader_sees():
    """ "acc\u202e5.0=ssol" would show as "acc" then "loss=0.5" reversed in a PR comment:
    the controls are dropped wherever a name is rendered (issue 11: strip them)."""
    raw = "acc\u202e5.0=ssol\u2066x\u2069"
    want = "acc5.0=ssolx"
    assert md_text(raw) == want and md_cell(raw) == want and html_text(raw) == want
    assert md_code(raw) == f"`{want}`"
    assert "\u202e" not in mermaid_label(raw)


def test_md_text_keeps_arrows_but_never_closes_an_html_comment():
    from lepton_ci.core.escape import md_text

    assert md_text("scikit-learn 1.9.1 -> 1.6.1") == "scikit-learn 1.9.1 -> 1.6.1"
    out = md_text("x --> y --!> z")
    assert "-->" not in out and "--!>" not in out

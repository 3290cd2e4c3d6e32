"""Hostile names and subjects stay inert wherever lepton-ci renders them."""

import re

import pytest
import yaml

from tests.conftest import commit_all, set_params

pytestmark = pytest.mark.e2e

CORPUS = [
    "acc|pipe",
    "multi\nline",
    "<script>alert(1)</script>",
    "@octocat ping",
    "fixes #12",
    "[click](https://evil.example)",
    "`tick` ```fence",
    "$(touch /tmp/pwned) `id`",
    "quote\" 'single'",
    '--> <!-- lepton-ci:meta {"sha": "x"} -->',
    "# heading",
    "**bold** _it_",
]


@pytest.fixture
def hostile(toy_repo, cli):
    cfg = toy_repo / "lepton.yaml"
    # the chart's key metric is hostile too
    cfg.write_text(
        cfg.read_text().replace(
            "noise: 0.001, key: true}",
            "noise: 0.001}\n"
            "      '[click](https://evil.example)': {key: true, informational: true}",
        )
    )
    # gated (so they are model-index results of the card) and a dataset to report them on
    config = yaml.safe_load(cfg.read_text())
    config["models"]["toy"]["gates"].update({name: {"direction": "higher"} for name in CORPUS})
    config["models"]["toy"]["card"] = {"datasets": ["toy-data"]}
    cfg.write_text(yaml.safe_dump(config))
    metrics = {name: float(i) for i, name in enumerate(CORPUS)}
    set_params(toy_repo, metrics_override={**metrics, "accuracy": 0.9, "loss": 0.1})
    commit_all(toy_repo, "feat: hostile names")
    assert cli("run")[0] == 0 and cli("register")[0] == 0
    set_params(
        toy_repo,
        metrics_override={**metrics, "accuracy": 0.91, "loss": 0.09},
        **{n: n for n in CORPUS},
    )
    commit_all(toy_repo, "feat: @octocat <img src=x onerror=alert(1)> [x](https://e.example) #12")
    code, _, err = cli("run")
    assert code == 0, err
    return toy_repo


def check_markdown(body: str) -> None:
    assert "<script" not in body and "<img" not in body
    assert re.search(r"@octocat", body) is None
    assert re.search(r"(?<!\\)\[click\]\(https", body) is None
    assert re.search(r"#(?!\u200b)12", body) is None  # no live issue reference
    assert "](https://e.example)" not in body.replace("\\]", "")
    for line in body.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) in (4, 5, 7), line  # card: 3/5 columns, comment: 5


def test_comment_escapes_every_field(hostile, cli):
    code, _, _ = cli("comment")
    assert code == 0
    body = (hostile / ".lepton" / "report" / "toy" / "comment.md").read_text()
    check_markdown(body)
    assert body.count("<!-- lepton-ci:meta") == 1
    assert body.count("<!-- lepton-ci:sticky") == 1
    assert body.count("-->") == 2  # only our two hidden lines close a comment
    chart = body.split("```mermaid\n", 1)[1].split("```", 1)[0]
    title = re.search(r'title "([^"]*)"', chart)[1]
    assert re.fullmatch(r"[A-Za-z0-9 .,:/%+\-_=]*", title)


def test_card_escapes_every_field_and_front_matter_round_trips(hostile, cli):
    code, out, err = cli("card", "--print")
    assert code == 0, err
    front, body = out.split("---\n")[1], out.split("---\n", 2)[2]
    check_markdown(body)
    meta = yaml.safe_load(front)
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert set(CORPUS) <= {m["name"] for m in results}  # YAML carries names exactly, quoted
    assert all(re.fullmatch(r"[a-z0-9_]+", m["type"]) for m in results)  # ids are ids
    assert (
        "feat: @\u200boctocat &lt;img src=x onerror=alert(1)> \\[x\\](https://e.example)"
        " #\u200b12" in body
    )


def test_terminal_table_keeps_names_verbatim(hostile, cli):
    code, out, _ = cli("diff", "--json")
    assert code == 0
    import json

    names = {m["metric"] for m in json.loads(out)["metrics"]}
    assert set(CORPUS) <= names


def test_an_error_quoting_hostile_text_cannot_close_the_summarys_code_block(
    cli, toy_repo, gh_files
):
    """model-pr-comment's error can quote a key of a fork's bundle: it stays inside the block."""
    import json

    assert cli("run")[0] == 0
    bundle = toy_repo / ".lepton" / "report" / "toy"
    meta = json.loads((bundle / "meta.json").read_text())
    meta["x\n```\n# PWNED [c](https://evil.example)\n````"] = 1
    (bundle / "meta.json").write_text(json.dumps(meta))
    gh_files["summary"].write_text("")
    assert cli("comment", "--from", str(bundle))[0] == 1
    lines = gh_files["summary"].read_text().rstrip("\n").split("\n")
    fence = lines[2]
    assert lines[0] == "**lepton-ci comment failed**" and lines[-1] == fence
    assert set(fence) == {"`"} and len(fence) > 4
    assert "# PWNED [c](https://evil.example)" in lines[3:-1]
    assert fence not in lines[3:-1]

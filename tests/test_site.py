"""`lepton-ci site`: the static versions view, built from a real git registry."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from lepton_ci.cli import main
from lepton_ci.core.git import Git
from lepton_ci.site import chart, pages
from lepton_ci.site import markdown as md
from lepton_ci.site.commits import Graph
from tests.support import site_repo

pytestmark = pytest.mark.unit


class Page(HTMLParser):
    """Every link, script and element of a page, as the browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.links.append(v)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    site_repo.make(root)
    return root


def site(repo: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["-C", str(repo), "site", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pages_links_and_escaping(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = site(repo, "--repo", "acme/models", capsys=capsys)
    assert code == 0, err
    assert "3 models, 6 versions" in out
    out_dir = repo / "_site"
    toy = out_dir / "models" / "toy"
    expected = ["index.html", "v0.1.0.html", "v0.2.0.html", "v0.3.0.html", "v0.3.1.html"]
    assert all((toy / f).is_file() for f in [*expected, "compare.html", "data.js"])
    assert (out_dir / "models" / "vision_resnet" / "v1.0.0.html").is_file()
    for page in out_dir.rglob("*.html"):
        p = parse(page)
        for link in p.links:
            parts = urlsplit(link)
            if parts.scheme:
                # Outside links only to the repository, over https: never javascript: or data:
                repo_url = "https://github.com/acme/models"
                assert link == repo_url or link.startswith(repo_url + "/"), (page, link)
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target.is_file(), f"{page.relative_to(out_dir)} links to missing {link}"
        # Hostile values arrive as text: no element or attribute they could have made.
        assert "img" not in p.tags
        assert "svg" not in p.tags or page.name == "index.html"  # charts: on model pages
        assert not any(k.startswith("on") for k, _ in p.attrs), page
        if "script" in p.tags:
            assert page.name == "compare.html"
    v2 = (toy / "v0.2.0.html").read_text()
    assert "&lt;img src=x onerror=alert(" in v2  # the hostile metric, shown as text
    assert "&lt;/script&gt;&lt;script&gt;alert(" in v2  # the hostile commit subject
    assert "<dd>javascript:alert(1)</dd>" in v2  # a run URL that is not http(s): no link
    v1 = (toy / "v0.1.0.html").read_text()
    assert '<a href="https://github.com/acme/models/actions/runs/1">' in v1
    lonely = (out_dir / "models" / "lonely" / "index.html").read_text()
    assert "No versions registered" in lonely
    assert "Mallory &#34;&amp;&#39; @admin" in v2  # who registered it
    # data.js keeps the names as data: no `<` that could end a script element.
    assert "<" not in (toy / "data.js").read_text()


def test_index_model_and_version_facts(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert site(repo, "--repo", "acme/models", capsys=capsys)[0] == 0
    out = repo / "_site"
    index = "".join(parse(out / "index.html").text)
    assert "toy" in index and "vision/resnet" in index and "deprecated" in index
    assert "prod: v0.2.0" in index and "staging: v0.2.0" in index
    model = (out / "models" / "toy" / "index.html").read_text()
    # deregistered is marked, the failed version says so in words, not only in colour
    assert re.search(r"v0\.3\.1</a> <span class=\"tag\">deregistered", model)
    assert "✗ failed" in model
    # two charts of gated metrics (not the informational one), with the gate bounds drawn
    assert model.count('<svg class="chart"') == 3  # accuracy, loss, and the hostile metric
    assert "min 0.5" in model and "max 0.6" in model
    assert "latency_ms by version" not in model
    # the stage timeline names who assigned what
    assert "toy#prod#3" in model and "Rel Ease" in model
    # deploy history from the podman target's files; a bogus version is text, not a link
    assert "rollback to 1" in model and "health check failed: &lt;script&gt;" in model
    assert 'href="javascript' not in model and ">javascript:alert(1)//<" in model
    assert "no deploy history on the machine that built this site" in model  # prod
    v1 = (out / "models" / "toy" / "v0.1.0.html").read_text()
    assert "https://github.com/acme/models/actions/workflows/model-promote.yml" in v1
    assert "Roll staging back to revision 3" in v1  # the newest healthy revision of v0.1.0
    v2 = (out / "models" / "toy" / "v0.2.0.html").read_text()
    assert "Roll staging back" not in v2  # v0.2.0 serves staging now
    assert "sha256:" + "1" * 64 in v1 and "(deployed: staging revision 3, staging revision 1)" in v1
    assert "<code>0.1.0</code>, <code>0.1</code>" in v1  # image tags
    v3 = (out / "models" / "toy" / "v0.3.0.html").read_text()
    assert "model-promote.yml" not in v3  # a failed version has no promote button
    assert "This version failed its gates: it cannot be promoted." in v3
    assert "below min 0.5" in v3
    # the card's changelog comes from the commit graph: the subject of v0.3.0's own commit
    assert "<li>fix: worse</li>" in v3
    # v0.3.1's baseline is v0.2.0: the page also compares it with v0.3.0, just before it
    v4 = (out / "models" / "toy" / "v0.3.1.html").read_text()
    # input files with their hashes: what changed since the baseline, the rest counted
    assert "<tr><td>code: train.py</td>" in v4 and "<td>modified</td>" in v4
    assert "1 input files unchanged since <code>toy@v0.2.0</code>" in v4
    assert "<td>first version</td>" in v1 and "unchanged since" not in v1
    assert "<caption>Against toy@v0.2.0</caption>" in v4
    assert "Against the previous version, v0.3.0" in v4
    assert '<tr><th>accuracy</th><td class="n">0.4</td><td class="n">0.91</td>' in v4
    assert "<tr><th>lr</th><td>0.1</td><td>0.3</td></tr>" in v4
    assert "<li>fix: again</li><li>fix: worse</li>" in v4  # commits since v0.2.0
    resnet = (out / "models" / "vision_resnet" / "v1.0.0.html").read_text()
    assert "carries no evidence record" in resnet
    broken = (out / "models" / "toy" / "v0.0.1.html").read_text()
    assert "not a valid evidence record (lepton-ci show toy@v0.0.1 says why)" in broken


def test_without_repository_address_no_buttons_but_commands(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert site(repo, capsys=capsys)[0] == 0
    v1 = (repo / "_site" / "models" / "toy" / "v0.1.0.html").read_text()
    assert "github.com/acme/models/commit" not in v1 and "model-promote.yml" not in v1
    assert "lepton-ci promote toy v0.1.0 STAGE" in v1
    # the model named: with two models in lepton.yaml, rollback without --model is refused
    assert "lepton-ci rollback staging --model toy --to 3" in v1


def test_pagination(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    assert site(repo, "--model", "toy", capsys=capsys)[0] == 0
    toy = repo / "_site" / "models" / "toy"
    assert sorted(
        p.name for p in toy.glob("*.html") if "page" in p.name or p.name == "index.html"
    ) == [
        "index.html",
        "page-2.html",
        "page-3.html",
    ]
    second = (toy / "page-2.html").read_text()
    assert "Versions 3 to 4 of 5" in second and 'aria-current="page">2<' in second
    assert '<svg class="chart"' not in second  # charts and timeline once, on the first page
    assert not (repo / "_site" / "models" / "vision_resnet").exists()  # --model


def test_an_out_in_a_folder_that_does_not_exist_is_refused_and_nothing_is_made(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in --out made the whole chain of folders silently; it is an error now."""
    out = tmp_path / "pubilc" / "docs" / "site"
    code, _, err = site(repo, "--out", str(out), capsys=capsys)
    assert code == 1, err
    assert f"--out {out}: its parent folder {out.parent} does not exist" in err
    assert f"mkdir -p {out.parent}" in err
    assert not (tmp_path / "pubilc").exists()
    # relative to -C, and under a file rather than a folder
    code, _, err = site(repo, "--out", "lepton.yaml/site", capsys=capsys)
    assert code == 1 and f"its parent folder {repo / 'lepton.yaml'} is not a directory" in err
    assert [p.name for p in repo.iterdir() if "tmp" in p.name or p.name == "_site"] == []
    out.parent.mkdir(parents=True)  # the fix the message gives
    code, _, err = site(repo, "--out", str(out), capsys=capsys)
    assert code == 0 and (out / "index.html").is_file(), err


def test_refuses_unsafe_input_and_leaves_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = repo / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = site(repo, "--out", "notes", capsys=capsys)
    assert code == 1 and "is not a site lepton-ci wrote" in err
    assert (other / "keep.txt").read_text() == "mine"
    code, _, err = site(repo, "--out", "notes/keep.txt", capsys=capsys)
    assert code == 1 and "is a file, not a directory" in err
    code, _, err = site(repo, "--out", "/proc/lepton-site", capsys=capsys)  # not writable
    assert code == 1 and "cannot write the site to /proc/lepton-site" in err
    code, _, err = site(repo.parent, capsys=capsys)
    assert code == 1 and "is not inside a git repository" in err
    code, _, err = site(repo, "--repo", "acme/models/../x", capsys=capsys)
    assert code == 1 and "not a repository name" in err and "OWNER/NAME" in err
    code, _, err = site(repo, "--base-url", "javascript:alert(1)", capsys=capsys)
    assert code == 1 and "--base-url" in err
    code, _, err = site(repo, "--model", "nope", capsys=capsys)
    assert code == 1 and "no registry tags for model `nope`" in err and "toy" in err
    bad = repo / ".lepton" / "deploy" / "toy" / "staging" / "revision-00009.json"
    bad.write_text('{"number": "x"}')
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "revision-00009.json: not a deploy revision" in err
    bad.unlink()
    bad.mkdir()  # not a file at all: a clear error, not exit 70
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "revision-00009.json: not a deploy revision: Is a directory" in err
    assert not (repo / "_site").exists()  # nothing half-written


def test_rebuild_replaces_own_site_and_base_url(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert site(repo, capsys=capsys)[0] == 0
    stale = repo / "_site" / "models" / "stale.html"  # a page of a model since deregistered
    stale.write_text("old")
    with (repo / "_site" / ".lepton-site").open("a") as marker:
        marker.write("models/stale.html\n")
    code, out, _ = site(repo, "--base-url", "https://acme.github.io/models", capsys=capsys)
    assert code == 0 and "published at https://acme.github.io/models/" in out
    assert not stale.exists()
    index = (repo / "_site" / "index.html").read_text()
    assert '<link rel="canonical" href="https://acme.github.io/models/index.html">' in index


def test_tags_alone_without_lepton_yaml(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "lepton.yaml").unlink()
    code, _, err = site(repo, capsys=capsys)
    assert code == 0, err
    model = (repo / "_site" / "models" / "toy" / "index.html").read_text()
    assert "not declared in lepton.yaml" in model and "min 0.5" not in model
    (repo / "lepton.yaml").write_text("models: [")
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "lepton.yaml" in err  # a broken config is an error, not ignored
    (repo / "lepton.yaml").write_bytes(b"models: {}\n# caf\xe9\n")  # Latin-1, not exit 70
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "lepton.yaml:2: not UTF-8 text" in err


def test_user_card_template_goes_through_markdown(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = repo / "lepton.yaml"
    cfg.write_text(
        cfg.read_text().replace("    card:\n", "    card:\n      template: card.md.j2\n")
    )
    (repo / "card.md.j2").write_text(
        "# {{ record.model }}\n\n**Owner**: {{ record.git.author }}\n\n"
        "| metric | value |\n|---|---:|\n"
        "{% for g in record.gates %}| {{ g.metric | cell }} | {{ g.candidate | num }} |\n"
        "{% endfor %}\n- [docs](https://example.com/docs)\n"
    )
    assert site(repo, capsys=capsys)[0] == 0
    v2 = (repo / "_site" / "models" / "toy" / "v0.2.0.html").read_text()
    assert "<strong>Owner</strong>: Mallory" in v2
    assert '<td class="right">0.93</td>' in v2
    assert "<td>&lt;img src=x onerror=alert(&quot;metric&quot;)&gt;</td>" in v2
    assert '<a href="https://example.com/docs">docs</a>' in v2
    (repo / "card.md.j2").write_bytes(b"# caf\xe9 {{ record.model }}\n")  # Latin-1
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "card.md.j2: not UTF-8 text" in err and "save the template" in err


def test_markdown_subset_lets_no_html_through() -> None:
    out = md.to_html(
        "---\nlicense: mit\n---\n# Title <script>\n\n"
        "text <b>raw</b> &lt;ok&gt; \\*not em\\* **strong** `co<de>` "
        "[bad](javascript:alert(1)) [good](https://x.org/a?b=1&c=2)\n\n"
        "| a | b |\n|---|:---:|\n| 1 \\| 2 | x<br>y |\n\n- one\n- <i>two</i>\n\n```\n<pre>\n```\n"
    )
    assert "<details><summary>Metadata (front matter)</summary><pre>license: mit</pre>" in out
    assert "<h2>Title &lt;script&gt;</h2>" in out
    assert "&lt;b&gt;raw&lt;/b&gt; &lt;ok&gt; &#42;not em&#42; <strong>strong</strong>" in out
    assert "<code>co&lt;de&gt;</code>" in out
    assert "javascript" in out and 'href="javascript' not in out
    assert '<a href="https://x.org/a?b=1&amp;c=2">good</a>' in out
    assert '<th class="center">b</th>' in out and "<td>1 &#124; 2</td>" in out
    assert '<td class="center">x<br>y</td>' in out
    assert "<li>&lt;i&gt;two&lt;/i&gt;</li>" in out
    assert "<pre><code>&lt;pre&gt;</code></pre>" in out


def test_chart_bounds_markers_and_words() -> None:
    pts = [chart.Point("v1", 0.9), chart.Point("v2 <b>", 0.95), chart.Point("v3", 0.4, True)]
    svg = chart.svg("acc<", pts, lower=0.5, chart_id="c1")
    assert svg.count('class="bound"') == 1 and "min 0.5" in svg
    assert svg.count('class="mark"') == 2 and svg.count('class="fail"') == 1
    assert "v2 &lt;b&gt;" in svg and "acc&lt; over 3 versions, from 0.9 (v1) to 0.4 (v3)" in svg
    assert 'aria-labelledby="c1-t c1-d"' in svg
    many = [chart.Point(f"v{i}", float(i)) for i in range(chart.MARKERS_UP_TO + 1)]
    assert 'class="mark"' not in chart.svg("m", many)  # a line only: bytes stay bounded
    assert chart.svg("m", []) == ""
    flat = chart.svg("m", [chart.Point("a", 1.0), chart.Point("b", 1.0)])
    assert "nan" not in flat and "inf" not in flat


def test_commit_subjects_match_git_log_with_merges(tmp_path: Path) -> None:
    """The one-call graph walk gives what `git log --no-merges base..head` gives."""
    repo = tmp_path / "g"
    repo.mkdir()
    site_repo.git(repo, "init", "-q", "-b", "main")
    site_repo.commit(repo, "f", "root")
    fork = site_repo.commit(repo, "f", "before fork")
    site_repo.git(repo, "checkout", "-q", "-b", "side")
    site_repo.commit(repo, "s", "side one")
    site_repo.commit(repo, "s", "side two")
    site_repo.git(repo, "checkout", "-q", "main")
    base = site_repo.commit(repo, "f", "base version")
    site_repo.commit(repo, "f", "after base \u2028 with a line separator \x1c inside")
    site_repo.git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    head = site_repo.commit(repo, "f", "head version")
    graph = Graph.read(Git(repo), [head, base])
    expected = subprocess.run(
        ["git", "log", "--no-merges", "--format=%s", f"{base}..{head}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sorted(graph.subjects(base, head)) == sorted(s for s in expected if s)
    assert graph.subjects(head, head) == []
    assert graph.subjects("0" * 40, head) == []  # an unknown base: no list, not all history
    assert "before fork" not in graph.subjects(base, head) and fork


def test_pages_workflow_least_privilege_and_its_script_builds_the_site(
    repo: Path, tmp_path: Path
) -> None:
    import yaml

    from lepton_ci.init import scaffold

    text = (Path(__file__).parent.parent / "templates" / "workflows" / "model-site.yml").read_text()
    wf = yaml.safe_load(text)
    on = wf[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"workflow_run", "push", "workflow_dispatch"} and "**#*" in on["push"]["tags"]
    assert wf["permissions"] == {}
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read", "pages": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build" and all("timeout-minutes" in j for j in (build, deploy))
    uses = [s["uses"] for j in (build, deploy) for s in j["steps"] if "uses" in s]
    third_party = [u for u in uses if not u.startswith("lepton-ci/")]
    assert {u.split("@")[0] for u in third_party} >= {
        "actions/configure-pages",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
    }
    assert all(re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", u) for u in third_party), third_party
    step = next(s for s in build["steps"] if "run" in s)
    assert "${{" not in step["run"]  # inputs reach the script only through env
    # The step's own script, with what Actions would hand it.
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GITHUB_REPOSITORY": "acme/models",
        "LEPTON_BASE_URL": "https://acme.github.io/models/",
    }
    proc = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    index = (repo / "_site" / "models" / "toy" / "v0.1.0.html").read_text()
    assert "https://acme.github.io/models/models/toy/v0.1.0.html" in index
    assert "https://github.com/acme/models/commit/" in index
    # `lepton-ci init` adds it with the other workflows
    written = scaffold.init(tmp_path / "new", scaffold.Answers(model="toy-model"))
    assert tmp_path / "new" / ".github" / "workflows" / "model-site.yml" in written


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_parallel_workers_write_the_same_site(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lepton_ci.site import operations

    assert site(repo, "--out", "serial", capsys=capsys)[0] == 0
    monkeypatch.setattr(operations, "PARALLEL_FROM", 1)
    monkeypatch.setattr(operations.os, "sched_getaffinity", lambda _: {0, 1, 2})
    assert site(repo, "--out", "forked", capsys=capsys)[0] == 0
    serial = {p.relative_to(repo / "serial"): p.read_bytes() for p in files(repo / "serial")}
    forked = {p.relative_to(repo / "forked"): p.read_bytes() for p in files(repo / "forked")}
    assert serial == forked and len(serial) > 10
    # A failure in a worker is reported by the command, and nothing is swapped in.
    original = pages.Renderer.version_page

    def broken(self: pages.Renderer, m: object, v: pages.Version, newer: object) -> str:
        if v.name == "v0.3.0":  # rendered by a worker: the parent takes every third page
            raise ValueError("boom")
        return original(self, m, v, newer)

    monkeypatch.setattr(pages.Renderer, "version_page", broken)
    code, _, err = site(repo, "--out", "forked", capsys=capsys)
    assert code == 1 and "writing the version pages failed: ValueError: boom" in err
    assert (repo / "forked" / "models" / "toy" / "v0.3.0.html").is_file()  # the old site stays


def test_chart_of_values_that_are_not_finite_or_near_the_float_limits() -> None:
    """A hand-made record can hold NaN, infinity or 1e308: the SVG must still be numbers (a
    `nan` coordinate is an error in the browser and the line disappears)."""
    pts = [chart.Point("v1", 0.5), chart.Point("v2", float("nan")), chart.Point("v3", 0.7)]
    pts.append(chart.Point("v4", float("inf")))
    svg = chart.svg("acc", pts, lower=0.6, chart_id="c1")
    coords = re.findall(r'(?:points|x|y|y1|y2)="([^"]*)"', svg)
    assert coords and not any("nan" in c or "inf" in c for c in coords)
    assert svg.count('class="mark"') == 2 and "2 not a finite number, not drawn" in svg
    huge = chart.svg("m", [chart.Point("a", 1e308), chart.Point("b", -1e308)], upper=1e308)
    coords = re.findall(r'(?:points|x|y|y1|y2)="([^"]*)"', huge)
    assert not any("nan" in c or "inf" in c for c in coords), huge
    assert chart.svg("m", [chart.Point("a", float("nan"))]) == ""


def test_a_tag_message_that_is_not_utf8_is_no_internal_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """git keeps a tag message's bytes as they were given; reading them must not crash."""
    msg = b'Register toy@v9.0.0\n\n{"bad": "\xff\xfe"}\n'
    subprocess.run(
        ["git", "tag", "-a", "-F", "-", "odd-\xe9"], cwd=repo, input=b"x \xff", check=True
    )
    subprocess.run(["git", "tag", "-a", "-F", "-", "toy@v9.0.0"], cwd=repo, input=msg, check=True)
    code, _, err = site(repo, capsys=capsys)
    assert code == 0, err
    page = (repo / "_site" / "models" / "toy" / "v9.0.0.html").read_text(encoding="utf-8")
    assert "not a valid evidence record" in page


def test_models_whose_names_differ_only_in_slash_or_dashes_get_their_own_folders(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`a/b` and `a--b` are both valid names; one folder for both was an internal error."""
    site_repo.git(repo, "tag", "-a", "-m", "by hand", "vision--resnet@v2.0.0")
    code, _, err = site(repo, capsys=capsys)
    assert code == 0, err
    models = repo / "_site" / "models"
    assert (models / "vision_resnet" / "v1.0.0.html").is_file()
    assert (models / "vision--resnet" / "v2.0.0.html").is_file()
    index = parse(repo / "_site" / "index.html")
    assert {"models/vision_resnet/index.html", "models/vision--resnet/index.html"} <= set(
        index.links
    )


def test_swap_survives_another_build_finishing_at_the_same_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds finishing together: the other one's site lands at `out` between our two
    renames. Removing `out` by hand (rmtree then rename) failed there with exit 70."""
    from lepton_ci.site import operations

    out, mine = tmp_path / "_site", tmp_path / ".tmp-mine"
    for d, text in ((out, "first"), (mine, "mine")):
        d.mkdir()
        (d / "index.html").write_text(text)
    real = Path.rename
    arrived = []

    def rename(self: Path, target: Path) -> Path:
        if self == mine and not arrived:  # the other build wins the race, once
            arrived.append(True)
            other = tmp_path / ".tmp-other"
            other.mkdir()
            (other / "index.html").write_text("other")
            real(other, out)
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    operations._swap(mine, out)
    assert arrived and (out / "index.html").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]  # nothing left aside


def test_bidirectional_controls_are_shown_not_obeyed(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """U+202E and friends survive HTML escaping and reorder what follows on screen: an author,
    subject, metric or param name could make a page read differently from what it holds."""
    rlo, lri = "\u202e", "\u2066"
    sha = site_repo.commit(repo, "b.txt", f"fix: {rlo}gnp.exe", who=f"Eve{rlo} 1.0 verified")
    prev = site_repo.record("v0.4.0", sha, {"accuracy": 0.9}, None)
    rec = site_repo.record(
        "v0.5.0", sha, {"accuracy": 0.91, f"f1{lri}x": 0.8}, prev, params={f"p{rlo}": f"v{rlo}"}
    )
    site_repo.register(repo, rec, who=f"Eve{rlo} 1.0 verified")
    revision = next((repo / ".lepton" / "deploy" / "toy" / "staging").glob("revision-*.json"))
    revision.write_text(
        re.sub(r'"version": ?"[^"]*"', f'"version": "v9{rlo}"', revision.read_text())
    )
    code, _, err = site(repo, "--repo", "acme/models", capsys=capsys)
    assert code == 0, err
    out = repo / "_site"
    for page in out.rglob("*"):
        if page.is_file():
            text = page.read_text(encoding="utf-8")
            assert rlo not in text and lri not in text, page
    v = (out / "models" / "toy" / "v0.5.0.html").read_text(encoding="utf-8")
    assert "Eve&lt;U+202E&gt; 1.0 verified" in v
    assert "p&lt;U+202E&gt;" in v and "f1&lt;U+2066&gt;x" in v
    data = (out / "models" / "toy" / "data.js").read_text(encoding="utf-8")
    assert "p\\u003cU+202E>" in data
    svg = chart.svg(f"m{rlo}", [chart.Point(f"v{rlo}1", 1.0)])
    assert rlo not in svg and "m&lt;U+202E&gt;" in svg


def test_worker_count_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has fork but no sched_getaffinity: a large site must not fail there."""
    from lepton_ci.site import operations

    monkeypatch.delattr(operations.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(operations.os, "cpu_count", lambda: 3)
    assert operations._workers(operations.PARALLEL_FROM) == 3
    assert operations._workers(operations.PARALLEL_FROM - 1) == 1


def test_swap_that_fails_puts_the_earlier_site_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lepton_ci.site import operations

    out, mine = tmp_path / "_site", tmp_path / ".tmp-mine"
    for d in (out, mine):
        d.mkdir()
        (d / "index.html").write_text(d.name)
    real = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self == mine:
            raise PermissionError(1, "Operation not permitted")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        operations._swap(mine, out)
    assert (out / "index.html").read_text() == "_site"  # the earlier site, where it was


def test_out_is_never_a_repository_or_a_folder_with_files_the_site_did_not_write(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`.lepton-site` alone was the check: `site --out .` in a repository holding that file
    replaced the repository, `.git` included, with the site."""
    (repo / ".lepton-site").write_text("written by `lepton-ci site`; replaced on each build\n")
    before = sorted(p.name for p in repo.iterdir())
    code, _, err = site(repo, "--out", ".", capsys=capsys)
    assert code == 1 and "is not a site lepton-ci wrote" in err
    assert sorted(p.name for p in repo.iterdir()) == before
    assert subprocess.run(["git", "-C", str(repo), "status"], capture_output=True).returncode == 0
    # A site with a file of the user's own in it is not replaced either.
    assert site(repo, capsys=capsys)[0] == 0
    mine = repo / "_site" / "models" / "notes.md"
    mine.write_text("mine")
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and "models/notes.md" in err and mine.read_text() == "mine"
    mine.unlink()
    (repo / "_site" / ".git").mkdir()  # nor a site folder turned into a repository
    code, _, err = site(repo, capsys=capsys)
    assert code == 1 and ".git" in err


def test_sigterm_mid_build_exits_143_and_leaves_no_scratch_folder(repo: Path) -> None:
    """SIGTERM killed `site` silently (exit -15) and left its `.tmp-PID` folder behind."""
    script = (
        "import os, signal, sys\n"
        "from lepton_ci.cli import main\n"
        "from lepton_ci.site import pages\n"
        "def page(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return ''\n"
        "pages.Renderer.version_page = page\n"
        f"sys.exit(main(['-C', {str(repo)!r}, 'site']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 143, proc.stderr
    assert "stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in repo.iterdir() if "tmp" in p.name or p.name == "_site"] == []


def test_ctrl_c_in_a_parallel_build_prints_no_worker_traceback(repo: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches the forked workers too; each printed a KeyboardInterrupt traceback.

    One Ctrl-C, as a terminal sends it: one SIGINT to the whole group once both workers are
    inside a page. (When each worker sent its own, a late second SIGINT could land after
    `site` had handled the first, and the run died of it: exit -2, one run in six.)"""
    ready = tmp_path / "ready"
    ready.mkdir()
    script = (
        "import os, signal, sys\n"
        "from lepton_ci.cli import main\n"
        "from lepton_ci.site import operations, pages\n"
        "operations.PARALLEL_FROM = 1\n"
        "operations.os.sched_getaffinity = lambda _: {0, 1, 2}\n"
        "parent = os.getpid()\n"
        "def page(*a, **k):\n"
        "    if os.getpid() != parent:\n"
        f"        open(os.path.join({str(ready)!r}, str(os.getpid())), 'w').close()\n"
        "        signal.pause()\n"
        "    return ''\n"
        "pages.Renderer.version_page = page\n"
        f"sys.exit(main(['-C', {str(repo)!r}, 'site']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        while len(list(ready.iterdir())) < 2 and proc.poll() is None:  # both workers in a page
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)  # a bound for a hang, not a measure
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr, stderr
    assert [p.name for p in repo.iterdir() if "tmp" in p.name or p.name == "_site"] == []


def test_a_build_that_finishes_as_another_swaps_its_site_in_does_not_crash(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four builds at once: 1 in 24 crashed (exit 70) counting the sizes of files another
    build's swap had just removed. The size is the site this build wrote, counted before."""
    from lepton_ci.site import operations

    real_swap, real_stat = operations._swap, Path.stat
    out = (repo / "_site").resolve()

    def swap_then_another_build(tmp: Path, dest: Path) -> None:
        real_swap(tmp, dest)

        seen: set[Path] = set()

        def stat(self: Path, **kw: bool) -> os.stat_result:
            # The other build's swap lands between is_file() and stat() of one file.
            if self.is_relative_to(out) and self != out and self in seen:
                raise FileNotFoundError(2, "No such file or directory", str(self))
            seen.add(self)
            return real_stat(self, **kw)

        monkeypatch.setattr(Path, "stat", stat)

    monkeypatch.setattr(operations, "_swap", swap_then_another_build)
    code, out_text, err = site(repo, capsys=capsys)
    monkeypatch.setattr(Path, "stat", real_stat)
    assert code == 0, err
    assert "13 pages" in out_text


def test_version_page_shows_the_training_environment(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert site(repo, capsys=capsys)[0] == 0
    toy = repo / "_site" / "models" / "toy"
    v4 = (toy / "v0.3.1.html").read_text()
    # the frameworks by name in the card, the interpreter and the full list in the evidence
    assert "<tr><th>torch</th><td>2.13.0</td></tr>" in v4
    assert "<tr><th>scikit-learn</th><td>1.6.1</td></tr>" in v4
    assert "<code>/work/.venv/bin/python</code>, named by the train command" in v4
    assert "<details><summary>All 4 installed packages</summary>" in v4
    assert "<li><code>scikit-learn==1.6.1</code></li>" in v4
    assert "<tr><th>Accelerator</th><td>none found</td></tr>" in v4
    # the package's hostile name is text (no element: see test_pages_links_and_escaping)
    assert "<li><code>&lt;img src=x onerror=alert(&#34;package&#34;)&gt;==1.0</code></li>" in v4
    # what changed against the baseline: v0.3.1 was trained with scikit-learn 1.6.1, v0.2.0 not
    v3 = (toy / "v0.3.0.html").read_text()
    assert "Environment: packages changed: scikit-learn 1.9.1 -&gt; 1.6.1." in v3
    # a record from before packages were listed says so, and lists none
    v1 = (toy / "v0.1.0.html").read_text()
    assert "Packages not listed (recorded by an older lepton-ci)." in v1
    assert "installed packages</summary>" not in v1
    v2 = (toy / "v0.2.0.html").read_text()
    assert "Environment: packages changed (interpreter; one record lists none)." in v2

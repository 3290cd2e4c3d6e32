"""GitHub API calls per sticky-comment update (target <= 3), and edits when unchanged (0).

Runs the real client, the real renderer (a full record with gates, lineage and a history
chart) and the real upsert against the local GitHub test server, which checks each request
and answer against GitHub's OpenAPI description. Calls are counted, not timed: one run says.

    python bench/comment_calls.py [COMMENTS]   (default 250 before or after ours)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _records import record

from lepton_ci.core.github import GitHubClient
from lepton_ci.report import comment as report
from lepton_ci.report import sticky
from tests.support.github_server import WORKFLOW_TOKEN, GitHubServer

REPO, PR, SHA = "acme/models", 1, "a" * 40


def rendered(run: int) -> tuple[report.Rendered, report.BundleMeta]:
    history = [report.Point(label=f"v0.{i}.0", value=0.9 + i / 100) for i in range(8)]
    meta = report.BundleMeta(
        model="digits", workflow="ci", head_sha=SHA, pr=PR, repo=REPO, run_id=run,
        history=history,
    )  # fmt: skip
    return report.render(record(run, "v0.9.0", "v0.8.0", SHA), meta), meta


def measure(before: int, after: int) -> tuple[int, int, int]:
    """`before` comments exist when lepton-ci first posts, `after` are added later."""
    with GitHubServer() as srv:
        srv.state.add_pull(REPO, PR, SHA)

        def discuss(n: int) -> None:
            # comments of another user, whole as GitHub lists them (the stand-in checks every
            # answer against GitHub's OpenAPI description and fails the bench on a mismatch)
            for _ in range(n):
                srv.state.new_comment(REPO, PR, "review comment", login="someone")

        discuss(before)
        gh = GitHubClient(WORKFLOW_TOKEN, base_url=srv.url, sleep=lambda s: None)

        def post(run: int) -> sticky.Upserted:
            start = gh.calls
            gh.pull(REPO, PR)
            r, meta = rendered(run)
            out = sticky.upsert(gh, REPO, PR, r, meta, head_sha=SHA)
            out.calls = gh.calls - start
            return out

        post(1)
        discuss(after)
        patches = srv.state.count("PATCH")
        update = post(2)
        unchanged = post(2)
        edits = srv.state.count("PATCH") - patches
        print(
            f"PR with {before} comments before ours, {after} after: update {update.calls} calls "
            f"(target <= 3 -> ratio {update.calls / 3:.2f}); unchanged {unchanged.calls} calls, "
            f"{edits - 1} edits (target 0)"
        )
        return update.calls, unchanged.calls, edits - 1


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 250
    measure(0, 0)
    measure(0, n)  # the usual case: lepton-ci comments on the PR's first push
    measure(n, 0)  # lepton-ci added to a PR that already had a long discussion

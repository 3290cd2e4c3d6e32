"""Commit subjects between versions, for every version at once, from ONE `git log` call.

The card lists the commits since the previous version (`git log base..head`); one git call per
version would cost seconds on a long registry, so the site reads the graph once and walks it
the way git does: newest first from both ends, until nothing left could change the answer.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from lepton_ci.core.git import Git


@dataclass(frozen=True)
class Commit:
    time: int
    parents: tuple[str, ...]
    subject: str
    order: int  # position in `git log --topo-order`


class Graph:
    def __init__(self, commits: dict[str, Commit]) -> None:
        self.commits = commits

    @classmethod
    def read(cls, git: Git, heads: Iterable[str]) -> Graph:
        revs = sorted(set(heads))
        if not revs:
            return cls({})
        out = git.run(
            ["log", "--topo-order", "--format=%H%x00%ct%x00%P%x00%s%x00", "--stdin"],
            input="\n".join(revs) + "\n",
        ).stdout
        commits: dict[str, Commit] = {}
        # each commit ends in NUL and newline: a subject may hold U+2028 or \x1c, which
        # str.splitlines() would split at
        for line in out.split("\0\n"):
            parts = line.split("\0")
            if len(parts) == 4:
                sha, ts, parents, subject = parts
                commits[sha] = Commit(int(ts), tuple(parents.split()), subject, len(commits))
        return cls(commits)

    def subjects(self, base: str, head: str) -> list[str]:
        """Subjects of the non-merge commits in `base..head`, newest first ([] when either
        end is not in the graph: better no list than the whole history)."""
        if head not in self.commits or base not in self.commits:
            return []
        head_only, from_base = 1, 2
        flags: dict[str, int] = {head: head_only}
        flags[base] = flags.get(base, 0) | from_base
        queue = [(-self.commits[head].time, head), (-self.commits[base].time, base)]
        heapq.heapify(queue)
        seen: set[str] = set()
        floor = self.commits[head].time  # the oldest commit reached only from head so far
        # Walk newest first while a queued commit is reached only from head, or is not older
        # than `floor` (it could still turn out to reach one of those: a branch forked before
        # the base). Equal times keep walking; only clock skew could fool it, as it can git.
        while queue and (-queue[0][0] >= floor or any(flags[s] == head_only for _, s in queue)):
            _, sha = heapq.heappop(queue)
            flag = flags[sha]
            seen.add(sha)
            if flag == head_only:
                floor = min(floor, self.commits[sha].time)
            for p in self.commits[sha].parents:
                if p in self.commits and flags.get(p, 0) | flag != flags.get(p, 0):
                    flags[p] = flags.get(p, 0) | flag
                    heapq.heappush(queue, (-self.commits[p].time, p))
        # A commit first reached from head may be reached from the base later: judge at the end.
        new = [
            self.commits[s]
            for s in seen
            if flags[s] == head_only and len(self.commits[s].parents) < 2
        ]
        # In `git log --topo-order` order: a commit before its parents, however the clocks say.
        return [c.subject for c in sorted(new, key=lambda c: c.order) if c.subject.strip()]

"""Server-side apply as the API server does it, on plain dicts: field sets, owners, conflicts.

A field is a path of `f:KEY` steps, and `k:{"name": ...}` steps for the items of a list of
objects keyed by `name` (containers, env, ports by `containerPort`); other lists are one
field. Every write names a field manager. An apply patch (`Apply`) owns exactly the fields
it sends: it conflicts (409) with another manager that owns a field it sets to another
value, unless forced, which takes the field over; a field it owned before and no longer
sends is removed, unless another manager owns it too. Any other write (`Update`: create,
merge or strategic patch, a subresource) takes over the fields it changes.
See https://kubernetes.io/docs/reference/using-api/server-side-apply/.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
MISSING = object()
LIST_KEYS = ("name", "containerPort", "port")


def _item_key(item: Any) -> str | None:
    if isinstance(item, dict):
        for k in LIST_KEYS:
            if k in item:
                return "k:" + json.dumps({k: item[k]}, separators=(",", ":"))
    return None


def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every field of `obj` a manager can own, with its value."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(leaves(v, (*prefix, f"f:{k}")))
    elif isinstance(obj, list) and obj and all(_item_key(i) for i in obj):
        for item in obj:
            out.update(leaves(item, (*prefix, str(_item_key(item)))))
    else:
        out[prefix] = obj
    return out


def tracked(obj: dict[str, Any]) -> dict[Path, Any]:
    """The fields of an object that managers own: not its identity, status or bookkeeping."""
    meta = obj.get("metadata") or {}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    mine = {k: meta[k] for k in ("labels", "annotations") if k in meta}
    if mine:
        body["metadata"] = mine
    return leaves(body)


def get(obj: Any, path: Path) -> Any:
    for step in path:
        if step.startswith("f:") and isinstance(obj, dict):
            obj = obj.get(step[2:], MISSING)
        elif step.startswith("k:") and isinstance(obj, list):
            obj = next((i for i in obj if _item_key(i) == step), MISSING)
        else:
            return MISSING
        if obj is MISSING:
            return MISSING
    return obj


def put(obj: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = obj
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if step.startswith("f:"):
            key = step[2:]
            if last:
                if not (value == {} and isinstance(node.get(key), dict)):
                    node[key] = copy.deepcopy(value)
                return
            nxt = path[i + 1]
            if not isinstance(node.get(key), (dict, list)):
                node[key] = [] if nxt.startswith("k:") else {}
            node = node[key]
        else:  # a keyed list item
            item = next((x for x in node if _item_key(x) == step), None)
            if item is None:
                item = dict(json.loads(step[2:]))
                node.append(item)
            if last:
                return
            node = item


def remove(obj: dict[str, Any], path: Path) -> None:
    """Remove a field, and the objects and list items it leaves empty."""
    trail: list[tuple[Any, str]] = []
    node: Any = obj
    for step in path:
        trail.append((node, step))
        node = get(node, (step,))
        if node is MISSING:
            return
    while trail:
        parent, step = trail.pop()
        if step.startswith("f:"):
            parent.pop(step[2:], None)
        else:
            parent[:] = [x for x in parent if _item_key(x) != step]
        if parent or not trail:
            return  # the container still holds something (or is the object itself)


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for p in sorted(paths):
        node = tree
        for step in p:
            node = node.setdefault(step, {})
            if step.startswith("k:"):
                node.setdefault(".", {})
    return tree


class Conflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str]], api_version: str) -> None:
        self.conflicts, self.api_version = conflicts, api_version
        n = len(conflicts)
        said = "; ".join(
            f'conflict with "{m}" using {api_version}: {dotted}' for m, dotted in conflicts
        )
        super().__init__(f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {said}")

    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{m}" using {self.api_version}',
                "field": dotted,
            }
            for m, dotted in self.conflicts
        ]


def dotted(path: Path) -> str:
    return "".join(f".{s[2:]}" if s.startswith("f:") else f"[{s[2:]}]" for s in path)


@dataclass
class Owners:
    """Who owns which fields of one object, as its metadata.managedFields says."""

    fields: dict[tuple[str, str], set[Path]] = field(default_factory=dict)  # (manager, op)

    def owner_of(self, path: Path, but: str = "") -> list[str]:
        return [m for (m, _), paths in self.fields.items() if m != but and path in paths]

    def apply(
        self, old: dict[str, Any] | None, config: dict[str, Any], manager: str, *, force: bool
    ) -> dict[str, Any]:
        """The object after `manager` applies `config`, and the new owners."""
        base = copy.deepcopy(old) if old is not None else {}
        sent = tracked(config)
        conflicts = []
        for path, value in sent.items():
            if get(base, path) == value:
                continue  # the same value: owned together, no conflict
            for other in self.owner_of(path, but=manager):
                conflicts.append((other, path))
        if conflicts and not force:
            raise Conflict(
                [(m, dotted(p)) for m, p in conflicts], str(config.get("apiVersion", "v1"))
            )
        for other, path in conflicts:
            for (m, _op), paths in self.fields.items():
                if m == other:
                    paths.discard(path)
        before = self.fields.pop((manager, "Apply"), set())
        for path in before - set(sent):
            if not self.owner_of(path, but=manager):
                remove(base, path)  # dropped from the config, and nobody else keeps it
        for k in ("apiVersion", "kind"):
            base[k] = config.get(k, base.get(k))
        meta = base.setdefault("metadata", {})
        for k in ("name", "namespace"):
            if k in (config.get("metadata") or {}):
                meta[k] = config["metadata"][k]
        for path, value in sent.items():
            put(base, path, value)
        self.fields[(manager, "Apply")] = set(sent)
        self._prune()
        return base

    def update(self, old: dict[str, Any] | None, new: dict[str, Any], manager: str) -> None:
        """`manager` wrote `new` over `old` without applying: it owns what it changed."""
        was, now = tracked(old or {}), tracked(new)
        changed = {p for p, v in now.items() if was.get(p, MISSING) != v}
        gone = set(was) - set(now)
        for paths in self.fields.values():
            paths -= changed | gone
        self.fields.setdefault((manager, "Update"), set()).update(changed)
        self._prune()

    def _prune(self) -> None:
        for key in [k for k, v in self.fields.items() if not v]:
            del self.fields[key]

    def managed_fields(self, api_version: str, time: str) -> list[dict[str, Any]]:
        return [
            {
                "manager": m,
                "operation": op,
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(paths),
            }
            for (m, op), paths in sorted(self.fields.items())
        ]

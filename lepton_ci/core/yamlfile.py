"""Reading YAML a user or a PR wrote: bounded, strict about duplicates, clear about bytes.

PyYAML follows aliases without limit (a few hundred bytes of `&a [*a, *a, ...]` expand to
gigabytes) and lets a repeated key silently replace the first (a second `models:` drops every
earlier model). Both are refused here, with the file and lines, before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lepton_ci.core.errors import LeptonError

MAX_NODES = 100_000  # values aliases may add to what the file spells out; a bomb adds millions
MAX_ALIASES = 1_000  # alias uses (`*name`); merge keys in real configs need a handful
# libyaml's parser when PyYAML was built with it: five times faster on large files.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(
    path: Path, what: str, error: type[LeptonError], *, max_bytes: int | None = None
) -> str:
    """A file's text as UTF-8, or `error` naming the first bad byte (or the size limit)."""
    try:
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise error(
                f"{path}: the {what} file is {size:,} bytes, more than the {max_bytes:,} "
                f"a {what} file may have",
                hint=f"check that {path.name} is the file you meant",
            )
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what} file: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): "
            f"the {what} file must be UTF-8",
            hint="save it as UTF-8",
            file=str(path),
            line=line,
        ) from None


def load(
    text: str, source: str, what: str, error: type[LeptonError]
) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of one YAML document; (None, None) for an empty one."""
    try:
        loader = _Loader(text)  # refuses unprintable characters already here
        try:
            node = loader.get_single_node()
            if node is None:
                return None, None
            _check(node, source, what, error)
            return loader.construct_document(node), node
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise error(
            f"{where}: the {what} file is not valid YAML: {problem}",
            hint="fix the YAML syntax at that line",
            file=source,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
        ) from None
    except ValueError as e:  # e.g. an integer longer than Python converts
        raise error(f"{source}: the {what} file holds a value that cannot be read: {e}") from None
    except RecursionError:
        raise error(
            f"{source}: the {what} file is nested too deeply to read",
            hint="flatten its structure",
        ) from None


def _check(root: yaml.Node, source: str, what: str, error: type[LeptonError]) -> None:
    """Count the values aliases expand to, and refuse duplicate keys; iterative, so a deep or
    recursive document cannot exhaust the stack here."""
    size: dict[int, int] = {}  # node id -> expanded size, once known
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()  # the path from the root to the node being expanded
    pushed: set[int] = {id(root)}
    while stack:
        node, done = stack.pop()
        if done:
            children = _children(node)
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            open_nodes.discard(id(node))
            continue
        if id(node) in size:
            continue
        open_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, source, what, error)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise error(
                    f"{source}:{child.start_mark.line + 1}: the {what} file contains a value "
                    "that includes itself through an alias",
                    hint="remove the recursive `*alias`",
                )
            if id(child) in pushed:  # reached a second time: through an alias
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise error(
                        f"{source}: the {what} file uses more than {MAX_ALIASES:,} YAML aliases;"
                        " refusing to read it",
                        hint="write the values out instead of repeating `*alias`",
                    )
            pushed.add(id(child))
            stack.append((child, False))
    # Sizes are summed per distinct node, so even a bomb costs only its own length to measure.
    if size[id(root)] - len(size) > MAX_NODES:
        raise error(
            f"{source}: YAML aliases in the {what} file expand it by more than {MAX_NODES:,} "
            "values; refusing to read it",
            hint="write the values out, or use fewer `*alias` references",
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _no_duplicate_keys(
    node: yaml.MappingNode, source: str, what: str, error: type[LeptonError]
) -> None:
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise error(
                f"{source}:{key.start_mark.line + 1}: key `{key.value}` appears twice in the "
                f"{what} file (first at line {first.start_mark.line + 1}); YAML would keep only "
                "the last one",
                hint="merge the two into one entry",
                file=source,
                line=key.start_mark.line + 1,
            )

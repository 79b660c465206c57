"""Safe YAML loading that keeps line numbers and rejects duplicate keys.

Only yaml.SafeLoader constructs are allowed: a tag such as !!python/object is an
error, never executed. Duplicate keys in one mapping are an error (PyYAML would
silently keep the last one, changing the file's meaning).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, Problem


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<: *anchor' merge key: SafeLoader's construct_mapping flattens it
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key '{key}' (first at line {seen[key] + 1}); each key may appear once",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping_plain(node, deep=deep)


_Loader.construct_mapping_plain = yaml.SafeLoader.construct_mapping
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class LineMap:
    """Maps a field path (tuple of keys and indices) to the line it is on."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, path) -> int | None:
        """Line of the value at path; for a block mapping or list under a key, the
        key's line; for a missing key, the line of the deepest part that exists."""
        node = self.root
        if node is None:
            return None
        here = node.start_mark.line + 1
        for key in path:
            nxt = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == str(key):
                        nxt = v
                        collection = isinstance(v, (yaml.MappingNode, yaml.SequenceNode))
                        here = (k if collection else v).start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if 0 <= key < len(node.value):
                    nxt = node.value[key]
                    here = nxt.start_mark.line + 1
            if nxt is None:
                break
            node = nxt
        return here


# Aliases (*name) let a few lines expand into millions of values ("billion
# laughs"); validation would then take minutes. Real instance files are far
# below this.
MAX_EXPANDED_NODES = 1_000_000


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Number of nodes the document has once aliases are expanded (stops past limit)."""
    memo: dict[int, int] = {}
    on_stack: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in on_stack:  # recursive alias: counted once, never looped
            return 1
        on_stack.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        on_stack.discard(key)
        memo[key] = total
        return total

    return size(root)


def load_yaml(path: str | Path, text: str | None = None) -> tuple[Any, LineMap]:
    """Load one YAML document safely. Raises InputError naming file and line."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError([Problem(name, "", "file not found")])
        except IsADirectoryError:
            raise InputError([Problem(name, "", "is a directory, expected a YAML file")])
        except UnicodeDecodeError as exc:
            raise InputError([Problem(name, "", f"not UTF-8 text ({exc.reason})")])
        except OSError as exc:
            raise InputError([Problem(name, "", f"cannot read: {exc.strerror}")])
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
                raise InputError([Problem(name, "", (
                    f"YAML aliases (*name) expand to more than {MAX_EXPANDED_NODES:,} values; "
                    "write the values out instead of nesting aliases"))])
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problem = exc.problem or "unsupported YAML"
        if "could not determine a constructor" in problem:
            problem = (f"unsupported YAML tag {problem.split('tag ')[-1]}: only plain "
                       "YAML values are allowed (the tag is not executed)")
        raise InputError([Problem(name, "", problem, line)])
    except yaml.reader.ReaderError as exc:
        # a control character: no mark, only a character offset into the text
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise InputError([Problem(name, "", f"YAML syntax error: unacceptable character #x{char:04x}: {exc.reason}", line)])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and msg.startswith("but "):  # "expected a single document..., but found another"
            msg = f"{context}, {msg}"
        raise InputError([Problem(name, "", f"YAML syntax error: {msg}", line)])
    except RecursionError:
        raise InputError([Problem(name, "", "YAML nested too deeply")])
    if data is None:
        raise InputError([Problem(name, "", "file is empty; expected a YAML mapping")])
    return data, LineMap(node)

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
        node = self.root
        best = None
        for key in path:
            if node is None:
                break
            best = node.start_mark.line + 1
            nxt = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == str(key):
                        nxt = v
                        best = k.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if 0 <= key < len(node.value):
                    nxt = node.value[key]
            node = nxt
        if node is not None:
            return node.start_mark.line + 1
        return best


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
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(exc, "problem", None) or str(exc)
        raise InputError([Problem(name, "", f"YAML syntax error: {msg}", line)])
    except RecursionError:
        raise InputError([Problem(name, "", "YAML nested too deeply")])
    if data is None:
        raise InputError([Problem(name, "", "file is empty; expected a YAML mapping")])
    return data, LineMap(node)

"""The one YAML reader of bitplane (specs, fold files, layer lists, training configs).

Built on PyYAML's safe loader (nothing in a file is ever executed), plus:

* duplicate keys in a mapping are refused (YAML leaves them to the reader; silently taking
  the last one hides typos);
* aliases are bounded: the document's size with every alias expanded may not exceed
  :data:`MAX_NODES` nodes, and its nesting :data:`MAX_DEPTH` levels (a few hundred bytes of
  nested anchors otherwise expand to gigabytes, and deep nesting overflows the stack);
* ``1e-4`` and ``1E5`` are numbers, as users write them (YAML 1.1 wants ``1.0e-4``);
* a file that is not UTF-8, too large, or not a regular file gets a one-line error.

Errors: ``error(message)`` builds the exception (default :class:`InputError` prefixed with the
file name), so each caller keeps its own error class (``SpecError``, ``PlanError``).
"""
from __future__ import annotations

import re

import yaml

from bitplane.core.errors import BitplaneError, InputError
from bitplane.core.fileio import read_text

MAX_NODES = 1_000_000
MAX_DEPTH = 200

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a mapping key must be a plain value", key_node.start_mark) from None
                if dup:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _short(v, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _check_size(root) -> None:
    """Expanded node count and depth of a composed document, without expanding it."""
    size: dict = {}
    stack = [(root, 1, False)]
    on_path = set()
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise _TooBig(f"nested more than {MAX_DEPTH} levels deep")
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            total = 1 + sum(size[id(k)] for k in kids)
            if total > MAX_NODES:
                raise _TooBig(f"expands to more than {MAX_NODES:,} values (aliases of aliases)")
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise _TooBig("holds a recursive alias")
        on_path.add(key)
        stack.append((node, depth, True))
        for k in _children(node):
            if id(k) not in size:
                stack.append((k, depth + 1, False))


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    return ()


class _TooBig(Exception):
    pass


def parse_yaml(text: str, error):
    """Parse ``text``; problems become ``error(one-line message)``."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_size(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _TooBig as e:
        raise error(f"YAML document refused: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"invalid YAML{where}: {str(problem)[:200]}") from None
    except RecursionError:
        raise error(f"YAML document refused: nested more than {MAX_DEPTH} levels deep") from None


def load_yaml(path, error=None, what: str = "YAML file", limit: int | None = None):
    """``(document, text)`` of the YAML file ``path``."""
    if error is None:
        def error(msg):
            return InputError(f"{path}: {msg}")
    try:
        text = read_text(path, what, limit)
    except BitplaneError as e:
        msg = str(e)
        prefix = f"{path}: "
        raise error(msg[len(prefix):] if msg.startswith(prefix) else msg) from None
    return parse_yaml(text, error), text

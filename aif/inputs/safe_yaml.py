"""YAML from users, read safely and with line numbers: the one loader of workflow files,
experiment files and ``--set`` values.

The text is *composed* with PyYAML's safe loader (nothing in it can construct an
object, let alone run code) and walked by hand into plain data, recording the line and
column of every key and list item under its location (``("aims", "gen", "type")``).
Everything a hostile or broken document could do is bounded or refused with a line
that names the file, the line and the fix (:class:`~aif.errors.InputError`):

* size (:data:`MAX_TEXT_CHARS`), NUL and other control characters;
* nesting deeper than :data:`MAX_DEPTH` (while composing, before Python's stack is at
  risk), more than :data:`MAX_COMPOSED` nodes written, and more than
  :data:`MAX_NODES` after aliases are expanded ("billion laughs"), recursive aliases;
* mapping keys that are not text or numbers (a date, a list, null), duplicate keys
  (both lines named: ``yaml.safe_load`` would silently keep the last), tags on
  collections;
* integers beyond 64 bits, and scalars PyYAML cannot construct (``2024-13-45``).

Whether a value makes sense is the reader's business (the workflow model, the
experiment spec); this module only guarantees plain, bounded data.
"""

from __future__ import annotations

from typing import Any

import yaml

from aif.errors import InputError

#: A position in the document: keys and list indices from its root.
Loc = tuple[str | int, ...]
#: Line and column (1-based) of each key and list item.
Marks = dict[Loc, tuple[int, int]]

#: Largest YAML text parsed (characters; a file is also limited in bytes when read).
MAX_TEXT_CHARS = 1 << 20
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: Most nodes written in a document (composing is pure Python: about 40 µs each).
MAX_COMPOSED = 100_000
#: Most nodes after alias expansion.
MAX_NODES = 1_000_000
#: Integers must fit 64 bits, signed or unsigned.
INT_RANGE = (-(1 << 63), (1 << 64) - 1)

_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_INT_TAG = "tag:yaml.org,2002:int"


class _Limit(Exception):
    """A bound was passed while composing; ``mark`` says where."""

    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting nodes and depth as it composes them."""

    def __init__(self, text: str, max_depth: int, max_composed: int) -> None:
        super().__init__(text)
        self.max_depth = max_depth
        self.max_composed = max_composed
        self.depth = 0
        self.composed = 0

    def _mark(self) -> yaml.Mark | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark if event is not None else None

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.composed += 1
        if self.composed > self.max_composed:
            raise _Limit(
                f"the document has more than {self.max_composed} values; split it or "
                "move bulk data to a data file",
                self._mark(),
            )
        self.depth += 1
        try:
            if self.depth > self.max_depth:
                raise _Limit(
                    f"nested more than {self.max_depth} levels deep; flatten it",
                    self._mark(),
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(
    text: str,
    source: str = "<string>",
    *,
    max_chars: int = MAX_TEXT_CHARS,
    max_depth: int = MAX_DEPTH,
    max_composed: int = MAX_COMPOSED,
    max_nodes: int = MAX_NODES,
    kind: str = "workflows",
) -> tuple[Any, Marks]:
    """The plain data of one YAML document and the marks of its keys and items.

    ``source`` names the text in messages (``file:line:column: problem``), ``kind``
    what such texts are (``workflows``, ``experiments``). Raises ``InputError`` with
    one line per problem found.
    """
    if len(text) > max_chars:
        raise InputError(
            f"cannot parse {source}",
            [f"{source}: {len(text)} characters, over the limit of {max_chars}; shorten it"],
        )
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(
            f"cannot parse {source}",
            [f"{_position(text, nul, source)}: a NUL byte; is it a binary file? save it as text"],
        )
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, max_depth, max_composed)  # its reader checks the text
        node = loader.get_single_node()
        if node is None:
            return None, {}
        builder = _Builder(loader, source, max_nodes, max_depth, kind)
        data = builder.build(node, (), 0)
    except _Limit as exc:
        raise InputError(f"cannot parse {source}", [f"{_at(source, exc.mark)}: {exc}"]) from None
    except yaml.MarkedYAMLError as exc:
        raise InputError(f"cannot parse {source}", [_yaml_problem(exc, source)]) from exc
    except yaml.reader.ReaderError as exc:
        where = _position(text, exc.position, source)
        problem = f"{where}: unacceptable character #x{exc.character:04x}; save it as plain text"
        raise InputError(f"cannot parse {source}", [problem]) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse {source}", [f"{source}: {exc}"]) from exc
    except RecursionError:  # a limit above the interpreter's stack: still an answer
        raise InputError(
            f"cannot parse {source}", [f"{source}: the document is nested too deeply"]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.problems:
        raise InputError(f"cannot parse {source}", builder.problems)
    return data, builder.marks


def _position(text: str, index: int, source: str) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{source}:{line}:{column}"


def _at(source: str, mark: yaml.Mark | None) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def _yaml_problem(exc: yaml.MarkedYAMLError, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    text = f"{_at(source, mark)}: {problem}"
    if exc.context and exc.problem:
        if exc.problem.startswith("but "):  # "expected a single document..., but found..."
            text = f"{_at(source, mark)}: {exc.context}, {exc.problem}"
        elif exc.context_mark is not None:
            text += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if "\\t" in problem:
        text += "; indent with spaces, not tabs"
    return text


def kind_of(value: object) -> str:
    """How a YAML user would name the kind of ``value``."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    if hasattr(value, "isoformat"):
        return "date"
    return type(value).__name__


class _Builder:
    """Turns a composed node tree into plain data, recording marks by location."""

    def __init__(
        self, loader: yaml.SafeLoader, source: str, max_nodes: int, max_depth: int, kind: str
    ) -> None:
        self.loader = loader
        self.kind = kind
        self.source = source
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.marks: Marks = {}
        self.problems: list[str] = []
        self._count = 0
        self._active: set[int] = set()

    def _at(self, node: yaml.Node) -> str:
        return _at(self.source, node.start_mark)

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self._count += 1
        if self._count > self.max_nodes:
            raise _Limit(
                f"the document expands to more than {self.max_nodes} nodes (aliases?); simplify it",
                node.start_mark,
            )
        if depth > self.max_depth:  # aliases of aliases nest deeper than what was written
            raise _Limit(
                f"nested more than {self.max_depth} levels deep (through aliases); flatten it",
                node.start_mark,
            )
        if id(node) in self._active:
            self.problems.append(f"{self._at(node)}: a recursive alias is not allowed here")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc, depth)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, loc, depth)
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == _INT_TAG and len(str(node.value)) > 100:
            self.problems.append(f"{self._at(node)}: an integer beyond 64 bits; quote it for text")
            return None
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML's own faults: the date 2024-13-45, '!!int' of nothing
            reason = str(exc) or type(exc).__name__
            self.problems.append(
                f"{self._at(node)}: {str(node.value)[:40]!r} cannot be read ({reason}); "
                "quote it to pass text"
            )
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = INT_RANGE
            if not low <= value <= high:
                self.problems.append(
                    f"{self._at(node)}: the integer {value} is beyond 64 bits; "
                    "use a smaller number, or quote it for text"
                )
                return None
        return value

    def _check_tag(self, node: yaml.Node) -> None:
        if node.tag not in _COLLECTION_TAGS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"unsupported YAML tag {node.tag!r}; {self.kind} are plain YAML, without tags",
                node.start_mark,
            )

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict[Any, Any]:
        self._check_tag(node)
        # Keys written here; '<<' merge keys bring in others, which these may override.
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    f"{self._at(key_node)}: mapping keys must be plain strings, got "
                    f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}"
                )
                continue
            key = self._scalar(key_node)
            if key is None or not isinstance(key, str | int | float | bool):
                if key is not None or key_node.tag == "tag:yaml.org,2002:null":
                    self.problems.append(
                        f"{self._at(key_node)}: mapping keys must be plain strings, got "
                        f"{kind_of(key)}; quote it: '{key_node.value}'"
                    )
                continue
            if id(key_node) in own:  # merged-in keys may be overridden; own keys may not
                if key in first_line:
                    self.problems.append(
                        f"{self.source}:{line}: duplicate key {key!r} (first at line "
                        f"{first_line[key]}); keep one"
                    )
                    continue
                first_line[key] = line
            child: Loc = (*loc, key if isinstance(key, str | int) else str(key))
            self.marks[child] = (line, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, child, depth + 1)
        return out

    def _sequence(self, node: yaml.SequenceNode, loc: Loc, depth: int) -> list[Any]:
        self._check_tag(node)
        out: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*loc, index)
            self.marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            out.append(self.build(item, child, depth + 1))
        return out

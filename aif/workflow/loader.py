"""Read an AIW file into a :class:`~aif.workflow.model.Workflow`, or say precisely why not.

Two things make the messages good, and both live here:

* The YAML is *composed* with PyYAML's safe loader (no object construction beyond
  plain scalars, so nothing in the file can run code) and walked by hand, recording the
  line of every key and list item under the pydantic location it will have
  (``("aims", "gen", "placement")``). Duplicate keys, which ``yaml.safe_load`` silently
  drops, are errors.
* pydantic's errors are rewritten one per line as ``file:line: dotted.path: problem``
  by :mod:`aif.workflow.messages`.

Whether AIM types exist and ports fit is :func:`aif.workflow.resolver.resolve`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml

from aif.errors import WorkflowError
from aif.workflow.messages import format_validation_errors, kind_of
from aif.workflow.model import Loc, SourceMap, Workflow
from aif.workflow.overrides import apply_overrides

#: Upper bound on YAML nodes after alias expansion (guards against "billion laughs").
MAX_NODES = 1_000_000

_STANDARD_TAGS = {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


def load_workflow(path: Path | str, overrides: Sequence[str] = ()) -> Workflow:
    """Load and check the shape of the AIW in ``path`` (raises ``WorkflowError``).

    ``overrides`` are ``KEY=VALUE`` changes applied before the check (``--set``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WorkflowError(f"workflow file {str(path)!r} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise WorkflowError(
            f"workflow file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise WorkflowError(f"cannot read workflow file {str(path)!r}: {exc.strerror}") from exc
    return load_workflow_text(text, source=str(path), overrides=overrides)


def load_workflow_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = ()
) -> Workflow:
    """Load an AIW from YAML text; ``source`` names it in messages (raises ``WorkflowError``)."""
    data, source_map = parse_yaml(text, source)
    if overrides:
        data = apply_overrides(data, overrides)
    if not isinstance(data, dict):
        kind = "an empty document" if data is None else f"a {kind_of(data)}"
        raise WorkflowError(
            f"invalid workflow {source}",
            [f"{source}:1: the workflow must be a mapping with name:, aims:, ... but is {kind}"],
        )
    try:
        workflow = Workflow.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = format_validation_errors(exc, Workflow, source_map)
        raise WorkflowError(f"invalid workflow {source}", problems) from exc
    workflow.attach_source(source_map)
    return workflow


# -- YAML with line numbers ------------------------------------------------------------


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse YAML safely, returning the data and the line of every key and list item."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, SourceMap(source)
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise WorkflowError(f"cannot parse {source}", [_yaml_problem(exc, source)]) from exc
    except yaml.YAMLError as exc:
        raise WorkflowError(f"cannot parse {source}", [f"{source}: {exc}"]) from exc
    except RecursionError as exc:
        raise WorkflowError(
            f"cannot parse {source}", [f"{source}: the document is nested too deeply"]
        ) from exc
    finally:
        loader.dispose()
    if builder.problems:
        raise WorkflowError(f"cannot parse {source}", builder.problems)
    return data, SourceMap(source, builder.marks)


def _yaml_problem(exc: yaml.MarkedYAMLError, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = exc.problem or exc.context or "invalid YAML"
    text = f"{where}: {problem}"
    if exc.context and exc.problem:
        if exc.problem.startswith("but "):  # "expected a single document..., but found..."
            text = f"{where}: {exc.context}, {exc.problem}"
        elif exc.context_mark is not None:
            text += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if "\\t" in problem:
        text += "; indent with spaces, not tabs"
    return text


class _Builder:
    """Turns a composed YAML node tree into Python data, recording marks by location."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.marks: dict[Loc, tuple[int, int]] = {}
        self.problems: list[str] = []
        self._count = 0
        self._active: set[int] = set()

    def _at(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise yaml.YAMLError(
                f"the document expands to more than {MAX_NODES} nodes (aliases?); simplify it"
            )
        if id(node) in self._active:
            self.problems.append(f"{self._at(node)}: a recursive alias is not allowed here")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, loc)
            return self.loader.construct_object(node, deep=True)
        finally:
            self._active.discard(id(node))

    def _check_tag(self, node: yaml.Node) -> None:
        if node.tag not in _STANDARD_TAGS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"unsupported YAML tag {node.tag!r}; workflows are plain YAML, without tags",
                node.start_mark,
            )

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self._check_tag(node)
        # Keys written here; '<<' merge keys bring in others, which these may override.
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        self.loader.flatten_mapping(node)  # resolves '<<' merge keys
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int | float | bool) or key is None:
                self.problems.append(
                    f"{self._at(key_node)}: mapping keys must be plain strings, got {kind_of(key)}"
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
            out[key] = self.build(value_node, child)
        return out

    def _sequence(self, node: yaml.SequenceNode, loc: Loc) -> list[Any]:
        self._check_tag(node)
        out: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*loc, index)
            self.marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            out.append(self.build(item, child))
        return out

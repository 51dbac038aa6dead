"""YAML reading that remembers where every key was written.

PyYAML silently keeps the last of two equal keys and forgets line numbers once a
document is turned into dicts; topology errors must name both, so this module walks
the composed node tree itself.

>>> doc = read_yaml_text("name: demo\\nagents:\\n  inc: {inputs: [$input]}\\n", "demo.yaml")
>>> doc.data["agents"]["inc"]["inputs"], doc.line("agents.inc.inputs")
(['$input'], 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamcompose.errors import TopologyError


@dataclass(frozen=True, kw_only=True)
class SourceMap:
    """Where each dotted key path of a document was written: the file and the lines.

    >>> print(SourceMap(file="t.yaml", lines={"agents.a": 3}).error("bad", "agents.a.inputs"))
    t.yaml:3: agents.a.inputs: bad
    """

    file: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)

    def line(self, key: str) -> int | None:
        """The line of ``key``, or of its nearest enclosing key that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None

    def error(self, message: str, key: str) -> TopologyError:
        return TopologyError(message, file=self.file, key=key or None, line=self.line(key))


@dataclass(frozen=True, kw_only=True)
class YamlDocument(SourceMap):
    """Plain data of a YAML document plus the line of each dotted key path."""

    data: Any

    def source_map(self) -> SourceMap:
        """The locations alone, without the data."""
        return SourceMap(file=self.file, lines=self.lines)


def _to_data(node: yaml.Node, path: str, lines: dict[str, int], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            sub = f"{path}.{key}" if path else key
            if key in out:
                raise TopologyError(f"duplicate key {key!r}", file=file, key=sub,
                                    line=key_node.start_mark.line + 1)
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, sub, lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, f"{path}.{i}", lines, file) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def read_yaml_text(text: str, file: str = "<string>") -> YamlDocument:
    """Parse YAML text, rejecting duplicate keys."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TopologyError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=file,
                            line=mark.line + 1 if mark else None) from exc
    lines: dict[str, int] = {}
    data = _to_data(node, "", lines, file) if node is not None else None
    return YamlDocument(data=data, lines=lines, file=file)


def read_yaml_file(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read the file: {exc.strerror}", file=str(path)) from exc
    return read_yaml_text(text, str(path))

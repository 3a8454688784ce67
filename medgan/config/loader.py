"""Reading configs: a bounded, safe YAML loader, ``--set`` overrides and one-line validation errors."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from medgan.config.base import BOOL_FOR_NUMBER
from medgan.config.kinds import MODEL_CONFIGS
from medgan.config.run import RunConfig, upgrade_raw
from medgan.errors import ConfigError

_TYPE_NAMES = {"int", "float", "str", "bool", "none", "Window", "list", "tuple", "dict"}


def _format_loc(loc: tuple[Any, ...]) -> str:
    tags = {"medmnist", "images", "dicom", "nifti", *MODEL_CONFIGS}
    parts = []
    for i, p in enumerate(loc):
        if i > 0 and loc[i - 1] in ("source", "model") and p in tags:
            continue  # the discriminator tag pydantic inserts
        if isinstance(p, str) and ("[" in p or p in _TYPE_NAMES):
            continue  # union member names pydantic inserts
        parts.append(str(p))
    return ".".join(parts) or "(top level)"


def validation_error_message(err: ValidationError, where: str) -> ConfigError:
    """Turn a pydantic error into one-line :class:`ConfigError` naming each bad key."""
    msgs: list[str] = []
    seen: set[str] = set()
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        loc = _format_loc(tuple(e["loc"]))
        if e["type"] == BOOL_FOR_NUMBER:  # raised by the section: the key is in the context
            loc = ".".join(x for x in (loc if loc != "(top level)" else "", e["ctx"]["key"]) if x)
            msg = f"expected {e['ctx']['what']}, got a boolean ({e['ctx']['value']})"
        if loc in seen:
            continue
        seen.add(loc)
        msgs.append(f"{loc}: {msg}")
    return ConfigError(where, "; ".join(msgs))


#: Largest config file read (bytes): real configs are a few KiB.
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings / lists in a config (real configs nest 4 levels).
MAX_YAML_DEPTH = 64
#: Most values a config may hold once YAML aliases are expanded (a "billion laughs" file holds 10**9).
MAX_YAML_VALUES = 100_000
_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


class _YAMLBound(yaml.YAMLError):
    """A config beyond the bounds above, or with a key given twice."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounded depth and size, refusing a key given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YAMLBound(
                    f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {}, set())
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise _YAMLBound(
                        f"key {key_node.value!r} appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Values ``node`` holds once aliases are expanded; refuses recursion and more than MAX_YAML_VALUES."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _YAMLBound("an alias refers to the mapping or list that contains it", node.start_mark)
    active.add(key)
    if isinstance(node, yaml.ScalarNode):
        total = 1
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, memo, active) for child in node.value)
    else:
        total = 1 + sum(
            _expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value
        )
    active.discard(key)
    if total > MAX_YAML_VALUES:
        raise _YAMLBound(
            f"holds more than {MAX_YAML_VALUES:,} values once aliases are expanded", node.start_mark
        )
    memo[key] = total
    return total


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no code execution), within the bounds above; raises ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no code execution
    except RecursionError:
        raise _YAMLBound("nested too deeply", None) from None


def _override_parts(item: str, key: str) -> list[str]:
    parts = key.strip().split(".")
    if not key.strip():
        raise ConfigError(f"--set {item}", "empty key")
    bad = [p for p in parts if not _KEY_PART.fullmatch(p)]
    if bad:
        shown = "an empty part" if "" in bad else f"{bad[0]!r}"
        raise ConfigError(
            f"--set {item}", f"key has {shown}; expected dotted names like data.size or study.ratios"
        )
    return parts


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict; returns a copy."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}", "expected KEY=VALUE, e.g. data.size=64")
        key, _, text = item.partition("=")
        parts = _override_parts(item, key)
        key = key.strip()
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}", f"value is not valid YAML ({_yaml_problem(exc)})") from None
        node: Any = out
        for i, p in enumerate(parts[:-1]):
            if isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}", f"'{'.'.join(parts[:i])}' is not a mapping")
            node = node.setdefault(p, {})
            if node is None:
                node = {}
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}", f"'{'.'.join(parts[:-1])}' is not a mapping")
    return out


def _yaml_problem(exc: BaseException) -> str:
    return str(getattr(exc, "problem", None) or exc.__class__.__name__)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely (no code execution; bounded size and depth; no key twice); one-line errors."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "config file not found")
    if p.is_dir():
        raise ConfigError(str(p), "is a folder, expected a YAML config file")
    if not p.is_file():
        raise ConfigError(
            str(p), "is not a regular file (a device, pipe or socket), expected a YAML config file"
        )
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), f"is {size:,} bytes; a config may be at most {MAX_CONFIG_BYTES:,}")
    try:
        raw = parse_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{p}:{line + 1}" if line is not None else str(p)
        raise ConfigError(where, f"not valid YAML ({_yaml_problem(exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(p), "top level must be a mapping of keys to values")
    return raw


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`."""
    try:
        return RunConfig.model_validate(upgrade_raw(raw, strict=True, where=where))
    except ValidationError as err:
        raise validation_error_message(err, where) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load and validate a YAML config, applying ``--set`` overrides first."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    return config_from_dict(raw, str(path))


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config (paths as strings), e.g. for ``config.resolved.yaml``."""
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False), sort_keys=False)

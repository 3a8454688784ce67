"""The base of every config section: unknown keys and booleans given for numbers are errors."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

#: Every seed medgan takes (configs, the CLI's ``--seed``, the plug-in): 0 <= seed < 2**63, what
#: NumPy's and torch's generators accept whole (a larger one would wrap or overflow).
MAX_SEED = 2**63
Seed = Annotated[int, Field(ge=0, lt=MAX_SEED)]

#: The error type of a boolean given where a number is expected (the loader names the key).
BOOL_FOR_NUMBER = "bool_for_number"


def _admits_bool(tp: Any) -> bool:
    """Whether a value of annotation ``tp`` may be a boolean (``bool``, ``Any``, a union or literal with one)."""
    if tp is bool or tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _admits_bool(typing.get_args(tp)[0])
    if origin is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(tp))
    if origin is typing.Union or origin is types.UnionType:
        return any(_admits_bool(a) for a in typing.get_args(tp))
    return False


def _numbers_in(tp: Any) -> Any:
    """The element annotation of a list / tuple / dict-value annotation, else None (not a container)."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if origin in (list, tuple, set, frozenset) and args:
        return typing.Union[tuple(args)] if len(args) > 1 else args[0]  # noqa: UP007
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _holds(tp: Any, value: Any) -> bool:
    """Whether annotation ``tp`` is a container of ``value``'s kind (a list for a list, a dict for a dict)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _holds(typing.get_args(tp)[0], value)
    if isinstance(value, dict):
        return origin is dict
    return isinstance(value, list | tuple) and origin in (list, tuple, set, frozenset)


def _bool_where_not_admitted(tp: Any, value: Any) -> bool:
    """True when ``value`` (or an element of it) is a boolean where ``tp`` does not admit one."""
    if isinstance(value, bool):
        return not _admits_bool(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _bool_where_not_admitted(typing.get_args(tp)[0], value)
    if origin is typing.Union or origin is types.UnionType:  # a container value: the options that hold one
        return any(_bool_where_not_admitted(o, value) for o in typing.get_args(tp) if _holds(o, value))
    inner = _numbers_in(tp)
    if inner is None:
        return False
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return any(_bool_where_not_admitted(inner, v) for v in items)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, and so is a boolean where a number (or a
    name) is expected: ``train.steps: true`` would otherwise run 1 step, ``ratios: [false]`` 0."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, v in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if field is not None and _bool_where_not_admitted(field.annotation, v):
                    raise PydanticCustomError(
                        BOOL_FOR_NUMBER,
                        "{key}: expected {what}, got a boolean ({value})",
                        {"key": key, "what": _what(field.annotation), "value": repr(v)},
                    )
        return data


def _what(tp: Any) -> str:
    """A short name of what an annotation expects, for the error line."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return {"int": "a whole number", "float": "a number", "str": "a name"}.get(name, name)

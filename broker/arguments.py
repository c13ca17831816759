"""Arguments of an ``@operation``, checked against its signature in one place.

A request's ``args`` must name the method's parameters: none missing that lacks a default,
none unknown (unless it takes ``**kwargs``), and never ``blobs`` (the runtime passes the
request's blob frames as ``blobs`` to a method that takes them). Each value must then fit
its parameter's annotation:

    ==================  ========================================  =====================
    annotation          accepts                                   says
    ==================  ========================================  =====================
    ``str``             a string                                  a string
    ``int``             an integer (not a bool)                   an integer
    ``float``           an integer or a float (not a bool)        a number
    ``bool``            true or false                             true or false
    ``dict``            a map                                     a map
    ``list[str]``       a list of strings (``list``: any list)    a list of strings
    ``X | None``        ``None`` as well (so does a default None)  ... or null
    ``Annotated[X, s]``  what ``X`` accepts                        ``s``
    anything else       anything: the method checks it itself
    ==================  ========================================  =====================

``Annotated`` names what the value means (``Annotated[list[str], "a list of image ids"]``)
so the message says it.

A value that does not fit is ``invalid_argument`` naming the operation, the argument and
what it must be; ranges and formats stay the method's own checks.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from .protocol import Error


@dataclass(frozen=True)
class _Kind:
    """What one annotation accepts."""
    test: Callable[[Any], bool]
    says: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SIMPLE = {
    str: _Kind(lambda v: isinstance(v, str), "a string"),
    int: _Kind(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: _Kind(_number, "a number"),
    bool: _Kind(lambda v: isinstance(v, bool), "true or false"),
    dict: _Kind(lambda v: isinstance(v, dict), "a map"),
    list: _Kind(lambda v: isinstance(v, list), "a list"),
}
_PLURAL = {"a string": "strings", "an integer": "integers", "a number": "numbers",
           "true or false": "true or false values", "a map": "maps", "a list": "lists"}


def _kind(annotation: Any, none_allowed: bool) -> _Kind | None:
    """The check an annotation stands for; None when it stands for none we know."""
    origin, params = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        kind = _kind(params[0], False)
        says = next((p for p in annotation.__metadata__ if isinstance(p, str)), None)
        if kind is not None and says is not None:
            kind = _Kind(kind.test, says)
        return kind if kind is None or not none_allowed else _or_none(kind)
    if origin in (typing.Union, types.UnionType):
        rest = [p for p in params if p is not type(None)]
        if len(rest) != 1:
            return None  # str | int and the like: the method knows best
        return _kind(rest[0], none_allowed or len(rest) < len(params))
    if origin is list and len(params) == 1:
        item = _kind(params[0], False)
        if item is None:
            return _kind(list, none_allowed)
        kind = _Kind(lambda v: isinstance(v, list) and all(item.test(i) for i in v),
                     f"a list of {_PLURAL[item.says]}")
    elif origin is dict:
        kind = _SIMPLE[dict]
    elif annotation in _SIMPLE:
        kind = _SIMPLE[annotation]
    else:
        return None
    return _or_none(kind) if none_allowed else kind


def _or_none(kind: _Kind) -> _Kind:
    return _Kind(lambda v: v is None or kind.test(v), f"{kind.says} or null")


@dataclass(frozen=True)
class Parameters:
    """What an operation's signature asks of a request's ``args``."""
    names: frozenset  # keyword arguments it takes (blobs excluded)
    required: frozenset  # those without a default
    any_keyword: bool  # it has **kwargs
    blobs: bool  # it takes the request's blobs
    kinds: tuple  # (name, _Kind) of the arguments whose annotation we check


@functools.cache
def parameters(method: Callable) -> Parameters:
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in params if p.name in names and p.default is p.empty}
    try:
        hints = typing.get_type_hints(method, include_extras=True)
    except Exception:  # an annotation naming what the module imports only for type checkers
        hints = {}
    kinds = []
    for param in params:
        if param.name in names and param.name != "blobs" and param.name in hints:
            kind = _kind(hints[param.name], param.default is None)
            if kind is not None:
                kinds.append((param.name, kind))
    return Parameters(frozenset(names - {"blobs"}), frozenset(required - {"blobs"}),
                      any(p.kind is p.VAR_KEYWORD for p in params), "blobs" in names,
                      tuple(kinds))


def check_arguments(op: str, method: Callable, args: dict) -> bool:
    """Raise ``invalid_argument`` unless ``args`` fit the method; True if it takes blobs."""
    params = parameters(method)
    missing = params.required - args.keys()
    if missing:
        raise Error("invalid_argument", f"{op}: missing argument(s): {', '.join(sorted(missing))}")
    unknown = set(args) - params.names if not params.any_keyword else set()
    if unknown or "blobs" in args:
        bad = ", ".join(sorted(unknown | ({"blobs"} & set(args))))
        known = ", ".join(sorted(params.names)) or "none"
        raise Error("invalid_argument", f"{op}: unknown argument(s): {bad} (it takes: {known})")
    for name, kind in params.kinds:
        if name in args and not kind.test(args[name]):
            raise Error("invalid_argument", f"{op}: {name} must be {kind.says}")
    return params.blobs

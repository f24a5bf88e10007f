"""The one exception type for mistakes in what a user gave simqos, and the one way a
validation error becomes its message.

A :class:`SimqosError` is a user's mistake (a wrong option, a missing or corrupt file, levels
that are not nested), never a bug: the command line prints its message on one line and exits
with status 2, without a traceback. Messages name the thing, the value, the rule and the fix.
:func:`validation_message` words what pydantic found in a scenario, a policy's parameters, a
sweep file, a profile's metadata or a command's options, the same way for all.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

__all__ = ["MAX_PROBLEMS", "SimqosError", "validation_message"]


class SimqosError(Exception):
    """A mistake in the user's input; the message says what, which value, and how to fix it."""


MAX_PROBLEMS = 5
"""Problems named in one message; the rest are counted."""


def validation_message(error: ValidationError, root: type[BaseModel], name: str, fields: Mapping[str, str] | None = None) -> str:
    """Every problem pydantic found in a document validated as ``root`` (called ``name`` where a
    hint says what it takes), on one line: each at its dotted path (``fields`` renames a
    top-level field, e.g. to the command-line option that gave it), with the value it got; an
    unknown key with the closest known one, or what its model takes; unknown keys first — a
    misspelt key is reported by pydantic both as unknown and as the right key missing, so the
    missing one is left out."""
    words = _vocabulary(root)
    errors = error.errors()
    typos = {(_dotted(e["loc"][:-1], words), close[0]) for e in errors if e["type"] == "extra_forbidden"
             for close in [difflib.get_close_matches(str(e["loc"][-1]), sorted(words["fields"]), n=1)] if close}
    kept = [e for e in errors if not (e["type"] == "missing" and (_dotted(e["loc"][:-1], words), str(e["loc"][-1])) in typos)]
    kept.sort(key=lambda e: e["type"] != "extra_forbidden")
    messages = list(dict.fromkeys(_message(e, root, name, words, fields or {}) for e in kept))
    more = len(messages) - MAX_PROBLEMS
    return "; ".join(messages[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def _flatten(annotation: Any) -> list[Any]:
    """``annotation`` and everything nested in it (unions, Annotated, list[...])."""
    return [annotation, *(inner for arg in get_args(annotation) for inner in _flatten(arg))]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _vocabulary(root: type[BaseModel]) -> dict[str, set[str]]:
    """Every field name under ``root`` (``fields``), and the location parts that name no field:
    union tags (``kind`` values) and model names, which pydantic puts in error locations."""
    fields, hidden, pending, seen = set(), {"function-after", "function-plain"}, [root], set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        hidden.add(model.__name__)
        for field, info in model.model_fields.items():
            fields.add(field)
            if field == "kind":
                hidden.update(str(tag) for tag in get_args(info.annotation))
            pending.extend(_models(info.annotation))
    return {"fields": fields, "hidden": hidden}


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model under ``root`` at ``loc`` (a pydantic error's location, union tags included),
    or None where it cannot tell."""
    candidates: list[Any] = [root]
    for item in loc:
        if isinstance(item, int):
            continue  # an element of a list: the list's own annotation holds its model
        tagged = [m for m in candidates if "kind" in m.model_fields and item in get_args(m.model_fields["kind"].annotation)]
        if len(candidates) > 1 and tagged:  # a union's tag picks its member
            candidates = tagged
            continue
        if len(candidates) != 1 or item not in candidates[0].model_fields:
            return None
        candidates = _models(candidates[0].model_fields[item].annotation)
        if not candidates:
            return None
    return candidates[0] if len(candidates) == 1 else None


def _dotted(loc: tuple, words: dict[str, set[str]], fields: Mapping[str, str] | None = None) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif str(item) in words["hidden"] and str(item) not in words["fields"]:
            continue
        else:
            shown = fields.get(str(item), str(item)) if fields and not parts else str(item)
            parts.append(("." if parts else "") + shown)
    return "".join(parts)


def _message(error: dict, root: type[BaseModel], name: str, words: dict[str, set[str]], fields: Mapping[str, str]) -> str:
    where = _dotted(error["loc"], words, fields)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        model = _model_at(root, error["loc"][:-1])
        known = sorted(model.model_fields) if model is not None else sorted(words["fields"])
        close = difflib.get_close_matches(key, [k for k in known if k != key], n=1)
        if close:
            hint = f" — did you mean {close[0]!r}?"
        elif model is not None:
            tag = model.model_fields["kind"].annotation if "kind" in model.model_fields else None
            parent = [str(x) for x in error["loc"][:-1] if not isinstance(x, int) and str(x) not in words["hidden"]]
            what = f"kind {get_args(tag)[0]!r}" if tag is not None and get_args(tag) else (parent[-1] if parent else name)
            hint = f" — {what} takes {', '.join(known) if known else 'no parameters'}"
        else:
            hint = ""
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: required, but missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"{where}.kind: {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"{where}: needs a 'kind'"
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}{shown}" if where else f"{message}{shown}"

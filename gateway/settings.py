"""The machinery behind ``config.toml``: declarative keys, one reader, the generated reference.

A section is a frozen dataclass whose fields are declared with ``setting()`` (a key: default,
one-line doc, optional ``Check``), ``section()`` (a sub-table), ``derived()`` (filled from the
table's own key or the file's path) or ``variants()`` (keys that belong to one of several
dataclasses, chosen by another key of the same table). ``read_file`` walks the TOML against
them and raises one ``ConfigError`` with every problem, "did you mean" included;
``describe_table`` writes the Markdown reference. ``gateway.config`` declares the sections.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from gateway.errors import ConfigError
from gateway.textsafe import closest

# --- Checks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A constraint on a field's value; ``rule`` completes "must be ..." in errors and docs."""

    rule: str
    test: Callable[[Any], bool]


def matches(pattern: str, rule: str) -> Check:
    compiled = re.compile(pattern)
    return Check(rule, lambda value: compiled.fullmatch(value) is not None)


POSITIVE = Check("greater than 0", lambda value: value > 0)
NON_NEGATIVE = Check("0 or more", lambda value: value >= 0)
NON_EMPTY = Check("non-empty", lambda value: len(value) > 0)


# --- Field declarations ------------------------------------------------------------------------


def setting(default: Any = MISSING, doc: str = "", check: Check | None = None) -> Any:
    """A config key: its default (omit for a required key), a one-line doc and a check."""
    return field(default=default, metadata={"doc": doc, "check": check})


def section(cls: type, *, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


def derived(*, source: Literal["key", "file"], doc: str, check: Check | None = None) -> Any:
    """A field not read from a key: filled from the table's own key or the file's path."""
    return field(metadata={"doc": doc, "check": check, "source": source})


def variants(*, by: str, choices: dict[str, type], doc: str) -> Any:
    """Keys written in the table itself that belong to one of ``choices``, picked by the key
    ``by`` (default: the first choice). Every choice's keys are read and checked, whichever is
    picked; only the picked one is kept, and its ``cross_checks`` are the table's to run."""
    return field(default_factory=next(iter(choices.values())),
                 metadata={"doc": doc, "by": by, "choices": choices})


# --- The reader ------------------------------------------------------------------------------

_INVALID: Final = object()  # a value that failed; its problem is already recorded
_UNIONS = (typing.Union, types.UnionType)


def _is_number(raw: Any) -> bool:
    if isinstance(raw, bool):  # True is an int in Python, never a number in a config
        return False
    if isinstance(raw, int):  # TOML's 64-bit range; tomllib reads more, and float() overflows
        return -(2**63) <= raw < 2**63
    return isinstance(raw, float) and math.isfinite(raw)


# Each scalar field type: its name in messages, and which TOML values it accepts.
_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda raw: isinstance(raw, bool)),
    int: ("an integer", lambda raw: _is_number(raw) and isinstance(raw, int)),
    float: ("a number", _is_number),
    str: ("a string", lambda raw: isinstance(raw, str)),
    Path: ("a path", lambda raw: isinstance(raw, str) and raw != ""),  # "" would mean the folder
    tuple[str, ...]: ("an array of strings", lambda raw: isinstance(raw, list)),
}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(raw: Any) -> str:
    """A TOML value as the user wrote it, for error messages."""
    if isinstance(raw, dict):
        return "a table"
    return json.dumps(raw) if isinstance(raw, bool) else repr(raw)


def _optional_inner(tp: Any) -> Any:
    return next(arg for arg in typing.get_args(tp) if arg is not type(None))


def _item_table(tp: Any) -> Any:
    """The dataclass of ``tuple[SomeDataclass, ...]`` (a table of tables by key), else None."""
    item = (*typing.get_args(tp), None)[0]
    return item if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(item) else None


def _keyed(item_cls: Any) -> bool:
    """A table of tables by key (``[partners.<id>]``), not an array of tables."""
    return any(f.metadata.get("source") == "key" for f in dataclasses.fields(item_cls))


def _choice_type(f: dataclasses.Field[Any]) -> Any:
    """The type of a ``variants`` field's ``by`` key: one of the choices' names."""
    return Literal.__getitem__(tuple(f.metadata["choices"]))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(tp))
    if origin in _UNIONS:
        return f'{_type_name(_optional_inner(tp))} or ""'
    if (item_cls := _item_table(tp)) is not None:
        return "a table of tables" if _keyed(item_cls) else "an array of tables"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return _SCALARS[tp][0]


def _read_fields(cls: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "source" not in f.metadata]


def _key_names(cls: Any) -> list[str]:
    """The keys a table of ``cls`` may hold, in declaration order (a ``variants`` field stands
    for its ``by`` key and every choice's keys)."""
    names: list[str] = []
    for f in _read_fields(cls):
        if "choices" not in f.metadata:
            names.append(f.name)
            continue
        names.append(f.metadata["by"])
        for choice in f.metadata["choices"].values():
            names += [name for name in _key_names(choice) if name not in names]
    return names


class _Reader:
    """Walks TOML tables against dataclasses, collecting every problem instead of stopping."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)

    def wrong_type(self, where: str, tp: Any, raw: Any) -> object:
        self.problem(where, f"expected {_type_name(tp)}, got {_show(raw)}")
        return _INVALID

    def path(self, raw: str | Path) -> Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def table(self, cls: Any, raw: dict[str, Any], where: str, preset: dict[str, Any],
              *, cross_check: bool = True) -> Any:
        hints = typing.get_type_hints(cls)
        names = _key_names(cls)
        for key, value in raw.items():
            if key not in names:
                kind = "section" if isinstance(value, dict) else "key"
                close = closest(key, names)
                hint = f"did you mean {close!r}?" if close else f"expected one of {names}"
                self.problem(_join(where, key), f"unknown {kind}; {hint}")
        values = dict(preset)
        valid = True
        for f in _read_fields(cls):
            at, tp = _join(where, f.name), hints[f.name]
            if "choices" in f.metadata:
                value = self.variant(f, raw, where)
            elif f.name in raw:
                value = self.value(tp, raw[f.name], at)
                check = f.metadata.get("check")
                if value is not _INVALID and value is not None and check and not check.test(value):
                    self.problem(at, f"must be {check.rule}, got {_show(raw[f.name])}")
                    value = _INVALID
            elif dataclasses.is_dataclass(tp):
                value = self.table(tp, {}, at, {})  # so paths inside a default get resolved
            elif f.default is not MISSING:
                value = self.path(f.default) if isinstance(f.default, Path) else f.default
            else:
                self.problem(at, "required key is missing")
                value = _INVALID
            valid = valid and value is not _INVALID
            values[f.name] = value
        if not valid:
            return _INVALID
        instance = cls(**values)
        for key, message in getattr(instance, "cross_checks", list)() if cross_check else ():
            self.problem(_join(where, key), message)
        return instance

    def variant(self, f: dataclasses.Field[Any], raw: dict[str, Any], where: str) -> Any:
        """The choice ``raw[by]`` names, read from the table's own keys. The other choices'
        keys are read and checked too (a wrong type is an error whatever the choice), then
        left unused."""
        by, choices = f.metadata["by"], f.metadata["choices"]
        chosen = self.value(_choice_type(f), raw[by], _join(where, by)) if by in raw \
            else next(iter(choices))
        read = {name: self.table(cls, {k: v for k, v in raw.items() if k in _key_names(cls)},
                                 where, {}, cross_check=False)
                for name, cls in choices.items()}
        if chosen is _INVALID or _INVALID in read.values():
            return _INVALID
        return read[chosen]

    def keyed_tables(self, item_cls: Any, raw: dict[str, Any], where: str) -> Any:
        """``[partners.<id>]``: each sub-table becomes one item, its key filling the id field."""
        key_field = next(f for f in dataclasses.fields(item_cls) if f.metadata.get("source"))
        check = key_field.metadata.get("check")
        items, valid = [], True
        for key, sub in raw.items():
            at = _join(where, key)
            if check and not check.test(key):
                self.problem(at, f"{key_field.name} must be {check.rule}, got {key!r}")
                valid = False
            if isinstance(sub, dict):
                items.append(self.table(item_cls, sub, at, {key_field.name: key}))
            else:
                items.append(self.wrong_type(at, item_cls, sub))
        valid = valid and all(item is not _INVALID for item in items)
        return tuple(items) if valid else _INVALID

    def table_array(self, item_cls: Any, raw: Any, where: str) -> Any:
        """``[[partners.<id>.mappings]]``: an array of tables, each one item, in order."""
        if not isinstance(raw, list) or not all(isinstance(sub, dict) for sub in raw):
            return self.wrong_type(where, tuple[item_cls, ...], raw)
        items = [self.table(item_cls, sub, f"{where}[{i}]", {}) for i, sub in enumerate(raw)]
        return _INVALID if _INVALID in items else tuple(items)

    def value(self, tp: Any, raw: Any, where: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in _UNIONS:
            if raw == "":  # TOML has no null: an empty string stands for "not set"
                return None
            inner = _optional_inner(tp)
            if inner in _SCALARS and not _SCALARS[inner][1](raw):
                return self.wrong_type(where, tp, raw)  # so the message offers "" too
            return self.value(inner, raw, where)
        if origin is Literal:
            if isinstance(raw, str) and raw in args:
                return raw
            close = [a for a in args if isinstance(raw, str) and a.lower() == raw.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.problem(where, f"expected {_type_name(tp)}, got {_show(raw)}{hint}")
            return _INVALID
        item_cls = _item_table(tp)
        if item_cls is not None and not _keyed(item_cls):
            return self.table_array(item_cls, raw, where)
        if item_cls is not None or dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                return self.wrong_type(where, tp, raw)
            if item_cls is not None:
                return self.keyed_tables(item_cls, raw, where)
            return self.table(tp, raw, where, {})
        if tp == tuple[str, ...] and isinstance(raw, list):
            bad = [i for i, item in enumerate(raw) if not isinstance(item, str)]
            for i in bad:
                self.wrong_type(f"{where}[{i}]", str, raw[i])
            return _INVALID if bad else tuple(raw)
        if tp in _SCALARS:
            if not _SCALARS[tp][1](raw):
                return self.wrong_type(where, tp, raw)
            return self.path(raw) if tp is Path else tp(raw)  # tp(): an int given for a float
        raise TypeError(f"settings.py cannot read a field of type {tp!r}")  # a bug, not a user's


def read_file(path: str | Path, cls: Any, path_field: str) -> Any:
    """Read and check a TOML file into ``cls`` (its ``path_field`` holds the file's path);
    ConfigError lists every problem in it at once."""
    # abspath, not resolve(): relative paths follow the folder the admin named, symlink or not.
    file_path = Path(os.path.abspath(Path(path).expanduser()))
    where = str(file_path)
    try:
        with file_path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(where, ["file not found"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # names the line and column
        raise ConfigError(where, [f"not valid TOML: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError(where, [f"cannot read the file: {exc.strerror}"]) from exc
    reader = _Reader(file_path.parent)
    loaded = reader.table(cls, data, "", {path_field: file_path})
    if reader.problems:
        raise ConfigError(where, reader.problems)
    return loaded


# --- The reference -----------------------------------------------------------------------------


def _toml_literal(value: Any) -> str:
    # JSON spells strings, numbers, booleans and arrays as TOML does; None is written "".
    if isinstance(value, Path | None):
        value = str(value or "")
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _row(name: str, tp: Any, default: Any, doc: str, check: Check | None) -> str:
    must = f"; must be {check.rule}" if check else ""
    shown = "required" if default is MISSING else f"`{_toml_literal(default)}`"
    return f"| `{name}` | {_type_name(tp)} | {shown} | {doc}{must} |"


def describe_table(cls: Any, header: str, out: list[str]) -> None:
    """Append the Markdown reference of ``cls`` (a table at ``header``) and its sub-tables."""
    hints = typing.get_type_hints(cls)
    rows: list[str] = []
    nested: list[tuple[str, str, Any]] = []  # (title, header of its keys, dataclass)
    for f in dataclasses.fields(cls):
        tp, doc, check = hints[f.name], f.metadata["doc"], f.metadata.get("check")
        if f.metadata.get("source") == "key":
            must = f"; must be {check.rule}" if check else ""
            out += [f"The table key `<{f.name}>` is {doc}{must}.", ""]
        elif f.metadata.get("source"):
            continue
        elif "choices" in f.metadata:
            by, choices = f.metadata["by"], f.metadata["choices"]
            rows.append(_row(by, _choice_type(f), next(iter(choices)), doc, None))
            nested += [(f'[{header}] with {by} = "{name}"', header, choice)
                       for name, choice in choices.items()]
        elif dataclasses.is_dataclass(tp):
            nested.append((f"[{_join(header, f.name)}]", _join(header, f.name), tp))
        elif (item_cls := _item_table(tp)) is not None and not _keyed(item_cls):
            sub = _join(header, f.name)
            rows.append(_row(f.name, tp, f.default, f"{doc} (`[[{sub}]]` below)", None))
            nested.append((f"[[{sub}]]", sub, item_cls))
        elif item_cls is not None:
            sub = _join(header, f"{f.name}.<id>")
            nested.append((f"[{sub}]", sub, item_cls))
        else:
            rows.append(_row(f.name, tp, f.default, doc, check))
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for title, sub_header, sub_cls in nested:
        out += [f"## {title}", "", inspect.cleandoc(sub_cls.__doc__ or ""), ""]
        describe_table(sub_cls, sub_header, out)


def describe_file(cls: Any, name: str) -> str:
    """A Markdown reference of every key of ``cls``: type, default and meaning."""
    out = [
        f"# {name} reference",
        "",
        "Generated by `gateway.config.describe()`. Relative paths are relative to the folder "
        "of the config file. Secrets are never kept in this file.",
        "",
    ]
    describe_table(cls, "", out)
    return "\n".join(out).rstrip() + "\n"


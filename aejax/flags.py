"""Command-line flags generated from dataclass configs, with named presets.

A config is a frozen dataclass; its fields (and those of nested config dataclasses)
are the flags: ``latent_dim: int = 24`` becomes ``--latent-dim`` with type, default
and help (``dataclasses.field(metadata={"help": ...})``) taken from the field, a
``Literal[...]`` type becomes ``choices``, a ``bool`` becomes ``--x / --no-x``. A field
with ``metadata={"cli": False}`` (derived from the data or the run) gets no flag. Flag
names are the leaf field names, so they must be unique across the nested configs.
The configs' own ``__post_init__`` checks are the flags' checks: a value a config
refuses is a usage error (exit 2, one line).

A preset is a named set of field values (by leaf name) applied over the defaults;
flags given on the command line override the preset's values:

    config, options = flags.parse(ExperimentConfig(), PRESETS, argv, description)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import types
import typing
from typing import Any, Callable, Literal, Mapping, Sequence

PRESET_DEFAULT = "lecture"


def field(default: Any, help: str, cli: bool = True, convert: Callable[[str], Any] | None = None) -> Any:
    """A config field with its command-line ``help``; ``cli=False``: not a flag (the run sets it,
    e.g. from the data or the run's length); ``convert``: the flag's argparse ``type`` in place
    of the one its annotation gives (e.g. ``positive_int``)."""
    metadata: dict[str, Any] = {"help": help} if cli else {"help": help, "cli": False}
    if convert is not None:
        metadata["convert"] = convert
    return dataclasses.field(default=default, metadata=metadata)


def positive_int(text: str) -> int:
    """argparse ``type``: an integer above 0, else "expected a positive integer, got ..."."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    return typing.get_type_hints(cls)[field.name]


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (kind, False)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def leaf_fields(config: Any, path: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Every flag-bearing field of ``config`` and its nested configs: {leaf name: (path, field, type)}.

    Raises ValueError when two nested configs share a leaf name (the flag would be ambiguous).
    """
    leaves: dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _is_config(value):
            nested = leaf_fields(value, path + (field.name,))
            clash = sorted(set(nested) & set(leaves))
            if clash:
                raise ValueError(f"config field names {clash} appear twice; flags need unique names")
            leaves.update(nested)
        elif field.metadata.get("cli", True):
            if field.name in leaves:
                raise ValueError(f"config field name {field.name!r} appears twice; flags need unique names")
            leaves[field.name] = (path + (field.name,), field, _field_type(type(config), field))
    return leaves


def without_flags(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` without the flags ``names`` (each ``--x``) and their values, given as ``--x V`` or ``--x=V``."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in names:
            skip = True
        elif not word.startswith(tuple(f"{name}=" for name in names)):
            kept.append(word)
    return kept


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(kind: Any) -> tuple[Any, tuple | None]:
    """(argparse ``type`` callable, choices or None) for a field type."""
    kind, _ = _unwrap_optional(kind)
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        return type(choices[0]), choices
    if kind in (int, float, str):
        def convert(text: str, kind=kind):
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                                 f"got {text!r}") from None
            if kind is float and not math.isfinite(value):  # a nan slips past every "< 0" check
                raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
            return value
        convert.__name__ = kind.__name__
        return convert, None
    if kind is pathlib.Path:
        return pathlib.Path, None
    if kind is bool:
        return _parse_bool, None
    raise TypeError(f"no command-line form for a config field of type {kind!r}")


_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT", pathlib.Path: "PATH"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, config: Any, title: str | None = None) -> None:
    """Adds a flag for every leaf field of ``config`` (defaults suppressed: only given flags land in the namespace)."""
    group = parser.add_argument_group(title or type(config).__name__)
    for name, (path, field, kind) in leaf_fields(config).items():
        default = _get(config, path)
        help_text = field.metadata.get("help", "")
        shown = "none" if default is None else default
        if _unwrap_optional(kind)[0] is bool:
            group.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"{help_text} (default: {shown})")
            continue
        convert, choices = _converter(kind)
        convert = field.metadata.get("convert", convert)
        group.add_argument(_flag(name), dest=name, type=convert, choices=choices, default=argparse.SUPPRESS,
                           metavar=None if choices else _METAVARS.get(_unwrap_optional(kind)[0], "VALUE"),
                           help=f"{help_text} (default: {shown})")


def _get(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def replace_fields(config: Any, values: Mapping[str, Any]) -> Any:
    """``config`` with fields replaced by leaf name (nested configs rebuilt, so their checks run).

    Raises ValueError naming an unknown field, or the config's own check that fails.
    """
    leaves = leaf_fields(config)
    unknown = sorted(set(values) - set(leaves))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known: {sorted(leaves)}")
    by_path: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, value in values.items():
        path = leaves[name][0]
        by_path.setdefault(path[:-1], {})[path[-1]] = value
    return _rebuild(config, (), by_path)


def _rebuild(config: Any, path: tuple[str, ...], by_path: dict[tuple[str, ...], dict[str, Any]]) -> Any:
    changes = dict(by_path.get(path, {}))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _is_config(value) and any(p[: len(path) + 1] == path + (field.name,) for p in by_path):
            changes[field.name] = _rebuild(value, path + (field.name,), by_path)
    return dataclasses.replace(config, **changes) if changes else config


def as_flat_dict(config: Any, path_as: Callable[[pathlib.PurePath], Any] = str) -> dict[str, Any]:
    """Every field of ``config`` and its nested configs by leaf name, JSON-ready (paths as ``path_as`` gives them,
    by default as strings)."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _is_config(value):
            flat.update(as_flat_dict(value, path_as))
        else:
            flat[field.name] = path_as(value) if isinstance(value, pathlib.PurePath) else value
    return flat


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors: ``prog: error: message`` (exit 2), no usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def make_parser(config: Any, presets: Mapping[str, Mapping[str, Any]], description: str,
                options: Any | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """A parser with ``--preset``, a flag per field of ``config`` and of ``options`` (run options)."""
    parser = ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default=PRESET_DEFAULT if PRESET_DEFAULT in presets else None,
                        help="named settings applied before the other flags: "
                             + "; ".join(f"{name}: {_describe(values)}" for name, values in presets.items()))
    add_config_flags(parser, config, "experiment settings")
    if options is not None:
        add_config_flags(parser, options, "run options")
    return parser


def _describe(values: Mapping[str, Any]) -> str:
    words = [_flag(k) if v is True else _flag("no_" + k) if v is False else f"{_flag(k)} {v}" for k, v in values.items()]
    return ", ".join(words) or "the defaults"


def parse(config: Any, presets: Mapping[str, Mapping[str, Any]], argv: list[str] | None, description: str,
          options: Any | None = None, prog: str | None = None) -> tuple[Any, Any, str | None]:
    """Parses ``argv`` into (config, options, preset name): defaults, then the preset, then the given flags.

    A value a config refuses (its ``__post_init__`` check) exits with status 2 and one line.
    """
    parser = make_parser(config, presets, description, options, prog)
    given = vars(parser.parse_args(argv))
    preset = given.pop("preset")
    option_names = set(leaf_fields(options)) if options is not None else set()
    try:
        chosen = {**(presets.get(preset, {}) if preset else {}),
                  **{k: v for k, v in given.items() if k not in option_names}}
        config = replace_fields(config, chosen)
        if options is not None:
            options = replace_fields(options, {k: v for k, v in given.items() if k in option_names})
    except (ValueError, TypeError) as e:
        parser.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return config, options, preset


def parse_options(options: Any, argv: list[str] | None, description: str, prog: str | None = None,
                  check: Callable[[Any], None] | None = None, title: str = "settings") -> Any:
    """Parses ``argv`` into ``options`` (a config without presets): its defaults, then the given flags.

    A value ``options`` refuses (its ``__post_init__``) or ``check`` refuses (a ValueError)
    exits with status 2 and one line.
    """
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, options, title)
    given = vars(parser.parse_args(argv))
    try:
        options = replace_fields(options, given)
        if check is not None:
            check(options)
    except (ValueError, TypeError) as e:
        parser.error(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return options

"""``--config FILE.toml``: a command's defaults from a TOML file.

The keys are the command's option names (``inputs-dim`` or ``inputs_dim``; ``format`` for
``--format``); the values become the command's defaults (``ctx.default_map``, filled by an
eager callback), so a flag on the command line overrides the file and the options' own checks
apply to both. For ``bptt sweep`` a list, or a string in the axis syntax (``"0.5:1.5:11"``), is
an axis. Unknown keys, values of the wrong type and values an option rejects are bad input
naming the file and the key. ``--config`` may be given several times: the files are read in
order, a later file's key overriding an earlier one's (and flags overriding them all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

from bptt_cli.errors import BadInput
from bptt_cli.io.points import cell_text
from bptt_cli.run.grid import convert, flag_of, parse_axis, value_kind

CONFIG_HELP = (
    "TOML file of defaults: keys are option names; flags on the command line override it. "
    "Repeatable: later files override earlier ones."
)

TOML_TYPES: dict[type | None, str] = {int: "an integer", float: "a number", bool: "true or false"}


def load_toml(path: Path) -> dict[str, Any]:
    """The table of a TOML file, or :class:`BadInput` naming the file."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise BadInput(f"cannot read config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"config {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise BadInput(f"config {path} is not valid TOML: {e}") from None


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _is_kind(value: Any, kind: type | None) -> bool:
    """Whether a TOML value has the type an option of ``kind`` (see :func:`value_kind`) takes."""
    if isinstance(value, bool):
        return kind is bool
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, int | float)
    if kind is bool:
        return False
    return isinstance(value, str)


def _scalar(param: Any, value: Any, ctx: typer.Context, where: str, axis: bool = False) -> Any:
    """A single value checked against the option's type, then by the option itself (an axis's
    value is named in the error)."""
    kind = value_kind(param)
    if not _is_kind(value, kind):
        extra = ", a list of them or an axis string" if axis else ""
        raise BadInput(
            f"{where} must be {TOML_TYPES.get(kind, 'a string')}{extra}, got {_type_name(value)} {value!r}"
        )
    return convert(param, value, ctx, where, cell_text(value) if axis else None)


def _axis_text(param: Any, value: Any, ctx: typer.Context, where: str) -> str:
    """A sweep axis from TOML (a value, a list or an axis string) as command-line axis text."""
    if isinstance(value, list):
        if not value:
            raise BadInput(f"{where}: empty axis (give a value, a list or a range)")
        values = [_scalar(param, v, ctx, where, axis=True) for v in value]
    elif isinstance(value, str):
        values = list(parse_axis(value, param, ctx, where))
    else:
        values = [_scalar(param, value, ctx, where, axis=True)]
    texts = [cell_text(v) for v in values]
    for text in texts:
        if "," in text:
            raise BadInput(f"{where}: value {text!r} contains a comma, which separates axis values")
    return ",".join(texts)


def _names(param: Any) -> set[str]:
    """The keys that name ``param``: its Python name and its flags, with - or _."""
    names = {str(param.name)} | {o.lstrip("-") for o in (*param.opts, flag_of(param))}
    return names | {n.replace("-", "_") for n in names} | {n.replace("_", "-") for n in names}


def make_config_callback(
    axes: Mapping[str, Any] | None = None, axes_ctx: typer.Context | None = None
) -> Callable[[typer.Context, typer.CallbackParam, Sequence[Path] | None], Sequence[Path] | None]:
    """The eager ``--config`` callback of a command (the option takes several files).

    ``axes`` (for ``bptt sweep``): the ``analyze`` options that are axes, by name, whose values
    are checked in ``axes_ctx`` (a context of the ``analyze`` command).
    """

    def callback(
        ctx: typer.Context, param: typer.CallbackParam, value: Sequence[Path] | None
    ) -> Sequence[Path] | None:
        if not value:
            return value
        defaults = load_defaults(value, ctx.command, ctx, axes, axes_ctx)
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        return value

    return callback


def load_defaults(
    paths: Sequence[Path],
    command: Any,
    ctx: typer.Context,
    axes: Mapping[str, Any] | None = None,
    axes_ctx: typer.Context | None = None,
) -> dict[str, Any]:
    """The defaults the TOML files ``paths`` set for ``command``'s options (by option name; later
    files override earlier ones), each checked by its option (in ``ctx``); :class:`BadInput` naming
    the file and the key. ``axes``, ``axes_ctx``: as for :func:`make_config_callback`."""
    by_key: dict[str, Any] = {}
    for option in command.params:
        if option.name != "config" and option.expose_value:
            by_key.update(dict.fromkeys(_names(option), option))
    defaults: dict[str, Any] = {}
    for path in paths:  # in order: a later file overrides an earlier one
        defaults.update(_load(path, by_key, ctx, axes, axes_ctx))
    return defaults


def _load(
    path: Path,
    by_key: Mapping[str, Any],
    ctx: typer.Context,
    axes: Mapping[str, Any] | None,
    axes_ctx: typer.Context | None,
) -> dict[str, Any]:
    """The defaults one config file sets, by option name, checked (see the module doc)."""
    data = load_toml(path)
    defaults: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, raw in data.items():
        where = f"config {path}: {key}"
        p = by_key.get(key)
        if p is None:
            raise BadInput(
                f"config {path}: unknown key {key!r} (keys are the options of bptt {ctx.info_name})"
            )
        if p.name in seen:
            raise BadInput(f"config {path}: {key!r} and {seen[p.name]!r} set the same option")
        seen[p.name] = key
        if isinstance(raw, dict):
            raise BadInput(f"{where} must be a value, got a table")
        if axes is not None and axes_ctx is not None and p.name in axes:
            defaults[p.name] = _axis_text(axes[p.name], raw, axes_ctx, where)
        else:
            if isinstance(raw, list):
                hint = " (lists are sweep axes: use bptt sweep)" if axes is None else ""
                raise BadInput(f"{where} must be a single value, got a list{hint}")
            _scalar(p, raw, ctx, where)
            defaults[p.name] = raw
    return defaults


config_callback = make_config_callback()
"""The ``--config`` callback of ``bptt analyze``."""

"""The config file's schema, derived from the commands' own options.

Every option of every command may be set in config.toml (`[up] overwrite = true`): its
type is checked against what click would accept on the command line, and the values
become click's default_map, so that flags and environment variables still win.
"""

from __future__ import annotations

from typing import Any

import click


def option_check(param: click.Option) -> Any:
    """A config.Check accepting the TOML values click takes for this option."""
    kind = param.type
    bounded = isinstance(kind, (click.IntRange, click.FloatRange, click.Choice))
    if param.is_bool_flag or isinstance(kind, click.types.BoolParamType):
        types: tuple[type, ...] = (bool,)
        expected = "true or false"
    elif isinstance(kind, click.types.IntParamType):
        types, expected = (int,), "a whole number"
    elif isinstance(kind, click.types.FloatParamType):
        types, expected = (int, float), "a number"
    elif isinstance(kind, click.Choice):
        types = (str,)
        expected = "one of " + ", ".join(f'"{c}"' for c in kind.choices)
    else:
        types, expected = (str,), "a string"
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        if kind.max is None:
            expected += f" of at least {kind.min}"
        elif kind.min is None:
            expected += f" of at most {kind.max}"
        else:
            expected += f" from {kind.min} to {kind.max}"

    def one(value: Any) -> bool:
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return False
        if bounded:
            try:
                kind.convert(value, param, None)
            except click.BadParameter:
                return False
        return True

    def check(value: Any) -> str | None:
        if param.multiple:
            ok = isinstance(value, list) and all(one(v) for v in value)
            return None if ok else f"a list, each item {expected}"
        return None if one(value) else expected

    return check


def config_names(param: click.Option) -> list[str]:
    """The keys that set an option in the config file: its name in click's default_map
    (`fmt`), then its long option spelled with `_` (`format` for --format)."""
    assert param.name is not None
    long = [o[2:].replace("-", "_") for o in param.opts if o.startswith("--")]
    return [param.name, *(n for n in long if n != param.name)]


def config_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.expose_value]


def config_schema(command: click.Command) -> dict[str, Any]:
    """What the config file may hold for a command: its options, a table per subcommand."""
    schema: dict[str, Any] = {}
    for param in config_options(command):
        check = option_check(param)
        schema.update(dict.fromkeys(config_names(param), check))
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            schema[name] = config_schema(sub)
    return schema


def default_map(command: click.Command, values: dict[str, Any]) -> dict[str, Any]:
    """Checked config values keyed as click's default_map wants them (`format` → `fmt`)."""
    out = dict(values)
    for param in config_options(command):
        name, *aliases = config_names(param)
        for alias in aliases:
            if alias in out:
                value = out.pop(alias)
                out.setdefault(name, value)
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            if isinstance(out.get(sub_name), dict):
                out[sub_name] = default_map(sub, out[sub_name])
    return out

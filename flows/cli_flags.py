"""Command-line flags generated from a flow's pydantic config, and the parser every subcommand uses.

Kept apart from :mod:`flows.cli` so that the subcommands defined elsewhere (:mod:`flows.models_cli`)
build their flags the same way without importing the CLI that imports them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import types
import typing
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no multi-line usage) naming the --help to read,
    and that never takes an abbreviation for a flag (``--stor`` is refused, not read as ``--storage``);
    ``comentarios`` uses it for every subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def reject_unknown(self, unknown: Sequence[str]) -> typing.NoReturn:
        """Refuse arguments no flag takes, suggesting the closest flag for a typo."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        word = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(word, flags, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        self.error(f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}{hint}")


def _none_or(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text.lower() in {"none", "null", ""} else kind(text)

    convert.__name__ = kind.__name__
    return convert


def _add_field(parser: argparse.ArgumentParser, name: str, info: FieldInfo) -> None:
    flag = "--" + name.replace("_", "-")
    annotation = info.annotation
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = origin in (typing.Union, types.UnionType) and len(args) < len(typing.get_args(annotation))
    if optional:
        annotation = args[0]
        origin = typing.get_origin(annotation)
    default = info.get_default(call_default_factory=True)
    help_text = f"{info.description} (default: {default})"
    if annotation is bool:
        parser.add_argument(
            flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
    elif origin is typing.Literal:
        parser.add_argument(
            flag, dest=name, choices=typing.get_args(annotation), default=argparse.SUPPRESS, help=help_text
        )
    elif origin is list:
        (item,) = typing.get_args(annotation)
        parser.add_argument(
            flag,
            dest=name,
            nargs="+",
            type=item,
            default=argparse.SUPPRESS,
            metavar=item.__name__.upper(),
            help=help_text,
        )
    elif origin is dict:
        parser.add_argument(
            flag, dest=name, type=json.loads, default=argparse.SUPPRESS, metavar="JSON", help=help_text
        )
    else:
        kind = _none_or(annotation) if optional else annotation
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=argparse.SUPPRESS,
            metavar=annotation.__name__.upper(),
            help=help_text,
        )


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        _add_field(parser, name, info)


def config_from_args(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    given = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    return model(**given)

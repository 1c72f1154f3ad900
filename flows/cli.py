"""``comentarios``: one subcommand per flow; every flow parameter is a flag generated from its config.

Flags come from the pydantic config's fields (name, type, default, description), so the CLI, the
Prefect parameters and the deployment YAML can never drift apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import types
import typing
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


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


def _run_train(args: argparse.Namespace) -> int:
    from flows.configs import TrainConfig
    from flows.train import train_lstm

    summary = train_lstm(config_from_args(TrainConfig, args))
    print(
        f"model version: {summary.version} ({'promoted to latest' if summary.promoted else 'NOT promoted'})"
    )
    print(f"model folder:  {summary.model_uri}")
    print(f"device:        {summary.device}")
    print(f"rows:          {summary.valid_rows} valid, {summary.rejected_rows} rejected")
    for name, m in summary.metrics.items():
        print(f"{name + ':':14s} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
    print(f"labels:        {summary.label_rows} rows used, {summary.unlabelled_rows} not labelled")
    print(f"champion:      {summary.champion or '(none)'}; " + "; ".join(summary.promotion_reasons))
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    summary = score_batches(config_from_args(ScoreConfig, args))
    print(f"model version: {summary.model_version}")
    print(f"batches:       {len(summary.scored)} scored")
    print(
        f"rows:          {summary.rows_in} in, {summary.rows_predicted} predicted, {summary.rows_rejected} rejected"
    )
    print(f"review:        {summary.rows_flagged} predictions flagged needs_review")
    return 0


def _run_deploy(args: argparse.Namespace) -> int:
    import subprocess

    from flows.deploy import stand_up

    try:
        stand_up(args.project_dir, runtime_project_dir=args.runtime_project_dir)
    except subprocess.CalledProcessError as exc:
        print(
            f"comentarios deploy: failed: {shlex.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr
        )
        return exc.returncode or 1
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from flows.deploy import start_worker

    return start_worker(args.pool)


def build_parser() -> argparse.ArgumentParser:
    from flows.configs import ScoreConfig
    from flows.configs import TrainConfig

    parser = argparse.ArgumentParser(
        prog="comentarios",
        description="Classify Spanish customer comments with an LSTM, orchestrated by Prefect.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    flow_commands = [
        ("train", "train-lstm", "Train, evaluate and publish a model", TrainConfig, _run_train),
        ("score", "score-batches", "Score new Parquet batches", ScoreConfig, _run_score),
    ]
    for name, flow_name, what, config, run in flow_commands:
        command = commands.add_parser(
            name, help=f"Run the {flow_name} flow.", description=f"{what} (flow {flow_name})."
        )
        add_config_flags(command, config)
        command.set_defaults(run=run)
    deploy = commands.add_parser(
        "deploy",
        help="Create the gpu and cpu work pools and deploy deployments/prefect.yaml to PREFECT_API_URL.",
        description="Create the work pools and the train-gpu and score-nightly deployments (see deployments/README.md).",
    )
    deploy.add_argument(
        "--project-dir", type=Path, default=None, help="Project checkout the workers run (default: this one)."
    )
    deploy.add_argument(
        "--runtime-project-dir",
        action="store_true",
        help="Let each worker read COMENTARIOS_PROJECT_DIR from its own environment at run time.",
    )
    deploy.set_defaults(run=_run_deploy)
    worker = commands.add_parser(
        "worker", help="Start a Prefect worker for the gpu or cpu pool (foreground)."
    )
    worker.add_argument("--pool", required=True, choices=["gpu", "cpu"])
    worker.set_defaults(run=_run_worker)
    from flows.models_cli import add_commands

    add_commands(commands)  # models list/show/promote/log, review export
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Without PREFECT_API_URL, Prefect starts a temporary local server; on a busy 2-core machine its
    # first start (database migrations) can take longer than Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the flow already logged the traceback; the CLI ends with one line
        print(f"comentarios {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

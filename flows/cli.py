"""``comentarios``: one subcommand per flow; every flow parameter is a flag generated from its config.

Flags come from the pydantic config's fields (name, type, default, description), so the CLI, the
Prefect parameters and the deployment YAML can never drift apart. Flags are never abbreviated (a typo
is refused, not taken for another flag), and every failure ends in one line on stderr
(``flows/errors.py``); ``--verbose`` adds the tracebacks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path

from flows.cli_flags import OneLineParser
from flows.cli_flags import add_config_flags
from flows.cli_flags import config_from_args
from flows.errors import one_line
from flows.errors import quiet_environment
from flows.errors import tidy_console
from flows.prefect_api import start_temporary_api

if typing.TYPE_CHECKING:
    from flows.score import ScoreSummary


def _print_paths(paths: dict[str, str]) -> None:
    """The last lines of a run's summary: where what it wrote is (what an analyst opens next)."""
    print("written:")
    for name, uri in paths.items():
        print(f"  {name + ':':24s} {uri}")


def _run_train(args: argparse.Namespace) -> int:
    from flows.configs import TrainConfig
    from flows.errors import check_train

    config = config_from_args(TrainConfig, args)
    check_train(config)
    server = start_temporary_api()  # boots while the flow's modules import; out of Ctrl-C's reach
    from flows.train import train_lstm

    _quiet_unless_verbose(args)
    if server:
        server.join()
    summary = train_lstm(config)
    print(
        f"model version: {summary.version} ({'promoted to latest' if summary.promoted else 'NOT promoted'})"
    )
    print(f"device:        {summary.device}")
    print(f"rows:          {summary.valid_rows} valid, {summary.rejected_rows} rejected")
    for name, m in summary.metrics.items():
        print(f"{name + ':':14s} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
    print(f"labels:        {summary.label_rows} rows used, {summary.unlabelled_rows} not labelled")
    print(f"champion:      {summary.champion or '(none)'}; " + "; ".join(summary.promotion_reasons))
    _print_paths(
        {
            "model folder": summary.model_uri,
            "rejected training rows": summary.rejected_rows_uri,
            "learning curve": summary.learning_curve_uri,
        }
    )
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from flows.configs import ScoreConfig
    from flows.errors import check_score

    config = config_from_args(ScoreConfig, args)
    check_score(config)
    server = start_temporary_api()  # boots while the flow's modules import; out of Ctrl-C's reach
    from flows.score import BatchesFailed
    from flows.score import score_batches

    _quiet_unless_verbose(args)
    if server:
        server.join()
    try:
        summary = score_batches(config)
    except BatchesFailed as exc:  # the good batches are written: say where, then one line per bad file
        if exc.summary is None:
            raise
        _print_score_summary(exc.summary)
        _print_batch_problems(exc.summary)
        return 1
    _print_score_summary(summary)
    return 0


def _print_batch_problems(summary: ScoreSummary) -> None:
    """One line per batch not scored (a run with many bad files is not one 1,000-character line)."""
    problems = [(name, f"unreadable: {why}") for name, why in summary.unreadable.items()]
    problems += [(name, f"failed: {why}") for name, why in summary.failed.items()]
    print(
        f"comentarios score: {len(problems)} batch(es) not scored (each file stays where it is; fix or "
        "replace it and score again; errors/unreadable lists the unreadable ones):",
        file=sys.stderr,
    )
    for name, why in problems:
        print(f"  {name}: {' '.join(why.split())}", file=sys.stderr)


def _print_score_summary(summary: ScoreSummary) -> None:
    print(f"model version: {summary.model_version}")
    print(f"batches:       {len(summary.scored)} scored")
    print(
        f"files skipped: {len(summary.skipped)} (the log says why), {summary.unchanged} unchanged since scored"
    )
    print(
        f"rows:          {summary.rows_in} in, {summary.rows_predicted} predicted, {summary.rows_rejected} rejected"
    )
    print(f"review:        {summary.rows_flagged} predictions flagged needs_review")
    _print_paths({**summary.tables, **({"run report": summary.report_uri} if summary.report_uri else {})})


def _quiet_unless_verbose(args: argparse.Namespace) -> None:
    if not args.verbose:
        tidy_console()


def _run_deploy(args: argparse.Namespace) -> int:
    import subprocess

    from flows.deploy import SETTINGS
    from flows.deploy import stand_up

    flags = {name: getattr(args, name) for name in SETTINGS}
    try:
        stand_up(args.project_dir, flags, runtime_project_dir=args.runtime_project_dir)
    except subprocess.CalledProcessError as exc:
        print(
            f"comentarios deploy: failed: {shlex.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr
        )
        return exc.returncode or 1
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from flows.deploy import start_worker

    return start_worker(args.pool, args.type)


def build_parser() -> OneLineParser:
    from flows.configs import ScoreConfig
    from flows.configs import TrainConfig
    from flows.deploy import SETTINGS

    parser = OneLineParser(
        prog="comentarios",
        description="Classify Spanish customer comments with an LSTM, orchestrated by Prefect.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    verbose = OneLineParser(add_help=False)
    verbose.add_argument(
        "--verbose", action="store_true", help="On failure, print the full traceback too (default: one line)."
    )
    flow_commands = [
        ("train", "train-lstm", "Train, evaluate and publish a model", TrainConfig, _run_train),
        ("score", "score-batches", "Score new Parquet batches", ScoreConfig, _run_score),
    ]
    for name, flow_name, what, config, run in flow_commands:
        command = commands.add_parser(
            name,
            help=f"Run the {flow_name} flow.",
            description=f"{what} (flow {flow_name}).",
            parents=[verbose],
        )
        add_config_flags(command, config)
        command.set_defaults(run=run)
    deploy = commands.add_parser(
        "deploy",
        parents=[verbose],
        help="Create the gpu and cpu work pools and deploy deployments/prefect.yaml to PREFECT_API_URL.",
        description="Create the missing work pools, store the settings given here as Prefect Variables, and "
        "deploy train-gpu and score-nightly (see deployments/README.md). A setting not given keeps its "
        "Variable's value, or its default if the Variable is not set.",
    )
    for name, (variable, env_name) in SETTINGS.items():
        deploy.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"Sets the Prefect Variable {variable} (default: ${env_name} if set).",
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
        "worker",
        help="Start a Prefect worker for the gpu or cpu pool (foreground; SIGTERM or Ctrl-C stops it).",
        description="Become `prefect worker start --pool POOL --type TYPE` (the same process: a signal "
        "sent to it reaches the worker). The worker creates its pool if it does not exist.",
        parents=[verbose],
    )
    worker.add_argument("--pool", required=True, choices=["gpu", "cpu"])
    worker.add_argument(
        "--type", default="process", help="Work pool type, if the worker creates the pool (default: process)."
    )
    worker.set_defaults(run=_run_worker)
    from flows.models_cli import add_commands

    add_commands(commands)  # models list/show/promote/log, review export
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].reject_unknown(unknown)
    quiet_environment()  # before the flow modules import Prefect
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the flow logged the details (and sent them to its Prefect logs)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"comentarios {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

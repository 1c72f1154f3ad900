"""``comentarios models`` and ``comentarios review``: the registry and the review queue, from a terminal.

No Prefect flow runs here: these read and write a few small objects in storage and return. Heavy
modules are imported inside each command, so ``comentarios --help`` stays fast.

* ``models list``: every version with its data, scores, gate decision, promotions; ``*`` = LATEST.
* ``models show VERSION``: what one version trained on, how it scored, why it was (not) promoted.
* ``models promote VERSION [--reason TEXT]``: put a version in service (or roll back to one): one
  write of ``models/LATEST`` and one entry in the promotions log.
* ``models log``: the promotions log, oldest first, as JSON Lines.
* ``review export [--out FILE] [--format xlsx|csv] [--force]``: the review queue as a workbook (or a safe
  CSV) to fill in, by default under ``<storage>/exports/`` (see ``tasks/feedback/review_export.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from flows.cli_flags import add_config_flags
from flows.cli_flags import config_from_args
from tasks.store.models import models_uri


def _storage(args: argparse.Namespace):
    from flows.configs import StorageParams
    from flows.errors import check_storage_folder

    check_storage_folder(
        getattr(args, "storage", "."), "pass --storage the folder `comentarios train --storage ...` wrote to"
    )
    return config_from_args(StorageParams, args).storage_root()


def _list(args: argparse.Namespace) -> int:
    from tasks.registry.catalog import list_versions
    from tasks.registry.catalog import versions_table

    storage = _storage(args)
    infos = list_versions(storage)
    if not infos:
        print(f"no model versions under {models_uri(storage)}")
        return 0
    print(versions_table(infos))
    return 0


def _show(args: argparse.Namespace) -> int:
    from tasks.registry.catalog import bundle_json
    from tasks.registry.catalog import describe_version
    from tasks.registry.versions import ModelNotFound

    storage = _storage(args)
    try:
        print(bundle_json(storage, args.version) if args.json else describe_version(storage, args.version))
    except ModelNotFound as exc:
        raise _no_such_version(storage, args, exc) from None
    return 0


def _no_such_version(storage, args: argparse.Namespace, exc: Exception) -> Exception:
    """``model version 'x' not found ...: comentarios models list --storage S shows the versions`` (and
    the closest names, for a typo)."""
    import difflib
    import shlex

    from flows.errors import ActionableError
    from tasks.store.models import complete_versions

    close = difflib.get_close_matches(args.version, complete_versions(storage), n=2, cutoff=0.6)
    listing = f"comentarios models list --storage {shlex.quote(args.storage)}"
    maybe = f"did you mean {' or '.join(close)}? " if close else ""
    return ActionableError(str(exc), f"{maybe}{listing} shows the versions there are")


def _promote(args: argparse.Namespace) -> int:
    from tasks.registry.promotion import MANUAL
    from tasks.registry.promotion import promote

    entry = promote(_storage(args), args.version, reason=args.reason, kind=MANUAL)
    print(f"LATEST: {entry['from'] or '(none)'} -> {entry['to']} (by {entry['user']}; logged)")
    return 0


def _log(args: argparse.Namespace) -> int:
    from tasks.registry.promotion import read_promotions

    for entry in read_promotions(_storage(args)):
        print(json.dumps(entry, ensure_ascii=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from flows.errors import ActionableError
    from tasks.feedback.review_export import ExportRefused
    from tasks.feedback.review_export import export_review
    from tasks.feedback.review_export import export_target

    storage = _storage(args)
    try:
        target = export_target(storage, args.out, args.format, args.force)
    except ExportRefused as exc:
        raise ActionableError(exc.problem, exc.todo) from None
    unreadable: list[tuple[str, str]] = []
    try:
        written, queued = export_review(
            storage,
            target,
            since=args.since,
            limit=args.limit,
            labels=args.labels,
            unreadable=unreadable,
            force=args.force,
        )
    except ExportRefused as exc:  # the file appeared meanwhile
        raise ActionableError(exc.problem, exc.todo) from None
    for _, why in unreadable:
        print(f"warning: {why}; comments labelled in it may be in this export again", file=sys.stderr)
    print(
        f"wrote {written} rows to {target.uri} ({queued} flagged predictions in the queue; one row per distinct "
        "comment not labelled yet). Fill in 'categoria', then put the file into <storage>/labels/."
    )
    return 0


def _add_storage_flags(parser: argparse.ArgumentParser) -> None:
    from flows.configs import StorageParams

    add_config_flags(parser, StorageParams)


def _since(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def add_commands(commands: Any) -> None:
    """Add ``models`` and ``review`` to the ``comentarios`` subcommands."""
    models = commands.add_parser("models", help="List, inspect and promote model versions (models/).")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="Every complete version; * marks LATEST.")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="One version: data, scores, champion/challenger decision.")
    show.add_argument("version")
    show.add_argument("--json", action="store_true", help="Print its bundle.json as stored.")
    show.set_defaults(run=_show)
    promote = actions.add_parser(
        "promote", help="Make VERSION the model in service (manual promotion or rollback); logged."
    )
    promote.add_argument("version")
    promote.add_argument("--reason", default="", help="Why (kept in the promotions log).")
    promote.set_defaults(run=_promote)
    log = actions.add_parser("log", help="The promotions log, oldest first, as JSON Lines.")
    log.set_defaults(run=_log)
    for parser in (listing, show, promote, log):
        _add_storage_flags(parser)

    review = commands.add_parser("review", help="The review queue (review/) for analysts.")
    review_actions = review.add_subparsers(dest="action", required=True)
    export = review_actions.add_parser(
        "export",
        help="Write the review queue as a workbook (.xlsx) or a safe CSV to fill in; most useful rows first.",
        description="One row per distinct comment not labelled yet: lowest confidence first, classes "
        "mixed, comments without words last. Fill in 'categoria' and put the file into <storage>/labels/.",
    )
    export.add_argument(
        "--out",
        default=None,
        help="File to write (local path or s3://...), ending in .xlsx or .csv; outside the storage root or "
        "under <storage>/exports/ (default: <storage>/exports/revision-<UTC time>.xlsx).",
    )
    export.add_argument(
        "--format",
        choices=("xlsx", "csv"),
        default=None,
        help="xlsx (recommended: typed cells, nothing evaluated, no locale guessing) or csv (every field "
        "quoted, formula-like text prefixed with ', confidence as a whole percentage). Default: --out's "
        "extension, xlsx without --out.",
    )
    export.add_argument("--force", action="store_true", help="Replace --out if it exists.")
    export.add_argument("--since", type=_since, default=None, help="Only rows scored on or after YYYY-MM-DD.")
    export.add_argument("--limit", type=_positive, default=None, help="At most N rows (the most useful).")
    export.add_argument(
        "--labels",
        default="auto",
        help="Label files whose comments are not asked again (auto: <storage>/labels/; none).",
    )
    _add_storage_flags(export)
    export.set_defaults(run=_export)

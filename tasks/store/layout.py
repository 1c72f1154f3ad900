"""Every folder and file under the storage root, named once.

The storage root is the analysts' database and the operators' ledger at once, so its names are an
interface: README, queries and other tools spell them. Only the store's modules (:mod:`tasks.store`)
read these names and build paths from them; jobs ask those modules for paths, so a folder is renamed
(or a new one documented) in one place, and a check such as "is this path one of the project's own
outputs" sees them all.

Paths are relative to the storage root, with ``/`` separators (local disk and S3 alike).
"""

from __future__ import annotations

# Scoring: what arrives, what it writes for analysts, and its bookkeeping.
INCOMING = "incoming"  # Parquet batches to score (the default --input)
PREDICTIONS = "predictions"  # one row per scored input row
REVIEW = "review"  # the predictions a person should check (needs_review)
ERRORS = "errors"
REJECTED = f"{ERRORS}/rejected"  # input rows that broke a row rule
UNREADABLE = f"{ERRORS}/unreadable"  # input files that could not be read
MISCLASSIFIED = f"{ERRORS}/misclassified"  # labelled input rows the model got wrong
REPORTS = "reports"
SUMMARIES = f"{REPORTS}/batches"  # one row per scored batch
RUNS = f"{REPORTS}/runs"  # one HTML report per scoring run
LEDGER = "ledger"  # one JSON object per scored batch: the commit point
SUPERSEDED = f"{LEDGER}/superseded"  # batches whose file was re-delivered with new content
INDEX = f"{LEDGER}/by-path"  # what each file location held when it was last read
CLAIMS = "claims"  # one run at a time per batch: leases written create-only

# The model registry and the feedback loop.
MODELS = "models"  # one folder per published version
LATEST = f"{MODELS}/LATEST"  # the version in service
PROMOTIONS = f"{MODELS}/promotions"  # one JSON object per switch of LATEST
LABELS_DIR = "labels"  # analysts' label files, read by training
EXPORTS = "exports"  # review exports written for analysts

# Files inside models/<version>/ besides the bundle's own (weights, vocab.json, bundle.json, splits.json:
# lstm_model.bundle names those, since it reads and writes them).
COMPLETE = "_COMPLETE"  # written last: SHA-256 of every file of the version
EVAL_FILE = "eval.parquet"  # the rows the version is judged on
REJECTED_ROWS_FILE = "rejected_rows.parquet"  # training rows left out, and why
LEARNING_CURVE_FILE = "learning_curve.png"

# The analyst-facing tables written by scoring, in the order reports list them.
TABLES = (PREDICTIONS, REVIEW, REJECTED, UNREADABLE, MISCLASSIFIED, SUMMARIES)
# Every top-level folder the project writes; input is never read from under one of them.
OWN_FOLDERS = (PREDICTIONS, REVIEW, ERRORS, REPORTS, LEDGER, CLAIMS, MODELS, LABELS_DIR, EXPORTS)
# The folders people (not the pipeline) put files into or take files from: training creates them, so
# the README's next step (``cp my_batch.parquet X/incoming/``) works on a new local root. The pipeline's
# own folders appear when something is written to them. On S3 a folder is only a key prefix: nothing is
# created there (a zero-byte "folder" object would show up in listings as a file of its own).
PEOPLE_FOLDERS = (INCOMING, LABELS_DIR, EXPORTS)

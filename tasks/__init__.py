"""Prefect tasks and the I/O they do, one package per job; each imports only the packages above it here.

* :mod:`tasks.common`: retries, record parsing, validation rules, charts;
* :mod:`tasks.store`: storage, and every path under its root (tables, model versions, the ledger, reports);
* :mod:`tasks.registry`: model versions, their evaluation rows, the promotion gate, promotions, the catalog;
* :mod:`tasks.scoring`: finding batches, claims, scoring one batch, output tables, the run report;
* :mod:`tasks.feedback`: the analysts' label files and the review export;
* :mod:`tasks.training`: the source, the training rows and split, modeling, champion/challenger, reports.

``tests/test_import_layers.py`` holds this order (and no import circles anywhere).
"""

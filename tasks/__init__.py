"""Prefect tasks and the I/O they do, one package per job; each imports only the packages above it here.

* :mod:`tasks.common`: storage, retries, record parsing, validation rules, charts, the storage layout;
* :mod:`tasks.registry.versions`: model versions, their evaluation rows, the promotion gate, promotions, the catalog;
* :mod:`tasks.scoring.score_file`: finding batches, claims, scoring one batch, output tables, the run report;
* :mod:`tasks.feedback`: the analysts' label files and the review export;
* :mod:`tasks.training`: the source, the training rows and split, modeling, champion/challenger, reports.

``tests/test_import_layers.py`` holds this order (and no import circles anywhere).
"""

"""The store layer: where bytes live (``storage``) and every path under the storage root.

Jobs ask these modules for a path or a listing and never spell one (``tests/test_store_owns_paths.py``
holds that), as dagster's I/O managers and kedro's catalog do for their nodes:

* ``layout``: the folder and file names, read only by the modules below;
* ``tables``: the analyst-facing Parquet tables: partitions, part names, writing, listing, reading;
* ``models``: the registry's folders: versions, their files, ``LATEST``, the promotions log;
* ``ledger``: scoring's books: ledger and superseded records, the path index, claims;
* ``reports``: the scoring runs' HTML reports;
* ``folders``: the folders people use (``incoming/``, ``labels/``, ``exports/``) and the pipeline's own.

Imports nothing of ``tasks`` but :mod:`tasks.common`.
"""

"""The nightly scoring job: finding new batches and the ledger (``discovery``, ``path_index``; never an
input under the storage's own folders: ``input_guard``), one run per batch (``claims``; every write
fenced by it: ``batch_writer``; leftovers of lost claims removed at the start of a run: ``reconcile``),
one batch from listing to ledger (``batch_job``), scoring a claimed batch (``score_file``, with the
row rules ``chunk_checks`` and ``duplicate_ids``), the analyst-facing tables (``outputs``), and what a
run reports (``run_report``, ``batch_summaries``)."""

"""What every job needs: which errors are retried (``retries``), parsing JSON records (``records``),
the dataset's schema and its Great Expectations rules (``schema``, ``validation``), charts, hints for
files that are not what they should be (``batch_hints``) and the hand-written evaluation comments
(``freeform``). Imports nothing else of ``tasks``."""

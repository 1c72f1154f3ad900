"""What every job needs: where bytes live (``storage``), which errors are retried (``retries``), the
storage root's folder names (``layout``), parsing JSON records (``records``), the dataset's schema and
its Great Expectations rules (``schema``, ``validation``), charts, hints for files that are not what
they should be (``batch_hints``), memory release and the hand-written evaluation comments
(``freeform``). Imports nothing else of ``tasks``."""

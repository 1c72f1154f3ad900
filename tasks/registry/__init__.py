"""Published model versions (``models/``): loading and verifying them (``versions``), the rows each is
judged on (``eval_rows``), the promotion rule (``gate``), switching ``LATEST`` and its log
(``promotion``), and what ``comentarios models list/show`` print (``catalog``)."""

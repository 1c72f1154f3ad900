"""The analysts' loop: label files under ``labels/`` read with training's rules (``labels``), and the
review queue exported for them to label (``review_export``, as XLSX or a spreadsheet-safe CSV: ``spreadsheet``)."""

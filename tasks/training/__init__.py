"""The training job: fetching the source (``source``), its rules and split (``dataset``), source and
label rows together (``rows``), training and evaluating (``modeling``), champion/challenger
(``champion``) and the training artifacts (``reports``)."""

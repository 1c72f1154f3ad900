"""Plain PyTorch and tokenizer code for the comentarios classifier.

Nothing in this package imports Prefect or touches storage: every function takes and returns
in-memory objects, so it can be unit-tested with tiny inputs and reused outside the flows.
"""

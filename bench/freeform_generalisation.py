"""Template masking, before and after: in-frame test macro-F1 and free-form macro-F1 over a few seeds.

"before" trains the project's model with no masking (frame_mask_prob=0, token_mask_prob=0, whole
words); "after" uses the project's defaults (template tokens masked with p=0.9, any token with p=0.3,
5-character stems). Both are scored on the test split (in-frame) and on the 120 hand-written free-form
comments of tasks/resources/freeform_eval.jsonl.

    .venv/bin/python bench/freeform_generalisation.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench._common import load_rows  # noqa: E402


def run(rows: list[dict], freeform, overrides: dict, seed: int) -> tuple[float, float, int, float]:
    from flows.configs import TrainConfig
    from lstm_model.batching import encode_tokens
    from lstm_model.evaluation import evaluate
    from lstm_model.frames import find_frame_tokens, frame_id_mask
    from lstm_model.model import LSTMClassifier, ModelConfig
    from lstm_model.splits import stratified_split
    from lstm_model.tokenizer import tokenize_arrow
    from lstm_model.training import predict_logits, seed_everything, train_classifier
    from lstm_model.vocab import Vocabulary

    cfg = TrainConfig(seed=seed, **overrides)
    labels = tuple(sorted({r["categoria"] for r in rows}))
    y = np.array([labels.index(r["categoria"]) for r in rows])
    parts = stratified_split([r["categoria"] for r in rows], seed=seed)
    tokens = tokenize_arrow(pa.array([r["comentario"] for r in rows], pa.string()))
    train_tokens = tokens.take(pa.array(parts["train"])).to_pylist()
    vocab = Vocabulary.build(train_tokens, prefix_chars=cfg.prefix_chars)
    frames = find_frame_tokens([vocab.normalise(t) for t in train_tokens], [labels[i] for i in y[parts["train"]]],
                               min_class_coverage=cfg.frame_coverage)
    enc = encode_tokens(tokens, vocab, cfg.max_len)
    seed_everything(seed)
    model = LSTMClassifier(ModelConfig(len(vocab), len(labels), **cfg.model_settings()))
    result = train_classifier(model, enc.take(parts["train"]), y[parts["train"]], enc.take(parts["val"]), y[parts["val"]],
                              cfg.training_settings(), frame_mask=frame_id_mask(vocab, frames))
    test = evaluate(y[parts["test"]], predict_logits(model, enc.take(parts["test"])).argmax(1), labels)
    ff_enc = encode_tokens(tokenize_arrow(pa.array(freeform["comentario"].tolist(), pa.string())), vocab, cfg.max_len)
    ff_y = np.array([labels.index(c) for c in freeform["categoria"]])
    ff = evaluate(ff_y, predict_logits(model, ff_enc).argmax(1), labels)
    return test.macro_f1, ff.macro_f1, len(result.history), sum(h.seconds for h in result.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    from tasks.freeform import load_freeform

    rows, freeform = load_rows(), load_freeform()
    variants = {
        "before (no masking, whole words)": {"frame_mask_prob": 0.0, "token_mask_prob": 0.0, "prefix_chars": None},
        "after (project defaults)": {},
    }
    print(f"{'variant':36s} {'seed':>4s} {'test F1':>8s} {'free-form F1':>12s} {'epochs':>6s} {'train s':>8s}")
    for name, overrides in variants.items():
        tests, ffs = [], []
        for seed in args.seeds:
            test_f1, ff_f1, epochs, seconds = run(rows, freeform, overrides, seed)
            tests.append(test_f1)
            ffs.append(ff_f1)
            print(f"{name:36s} {seed:>4d} {test_f1:>8.4f} {ff_f1:>12.4f} {epochs:>6d} {seconds:>8.1f}", flush=True)
        print(f"{name:36s} mean {statistics.mean(tests):>8.4f} {statistics.mean(ffs):>12.4f}")


if __name__ == "__main__":
    main()

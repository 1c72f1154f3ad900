"""Scoring throughput and memory: the whole ``comentarios score`` process against the bare model.

What it prints, all measured in this one run on this machine:

* the **bare forward pass** of the same model (the LSTM and the bag models, nothing else): once on
  this batch's own distinct rows (already tokenised, length-sorted batches of 1,024), and once on a
  fixed 1,024 x 14-token tensor (the LSTM alone, the reference sizes), in fp32 and bf16;
* the **whole process**: ``comentarios score`` started as a subprocess on a storage holding the batch
  (Python start-up, imports, Prefect's temporary server, model load and precision check, Great
  Expectations, Parquet in and out: everything), its rows/s with start-up included, the ratio to the
  faster bare pass, its peak RSS (the scoring process; the temporary Prefect server is a separate
  process and is shown apart), and the precision it chose and why;
* the agreement of bf16 with fp32 predictions on every row of the batch (when both runs are asked for);
* optionally (``--baselines``) the reference notebook's way and a scikit-learn TF-IDF scorer.

``--distinct`` batches are made of dataset comments with three words replaced by random dataset words,
so nearly every row is a different token sequence (real comment streams repeat little); without it,
batches repeat the dataset's ~1,150 texts and scoring runs each distinct text once.

    .venv/bin/python bench/score_throughput.py --distinct --rows 1000000
    .venv/bin/python bench/score_throughput.py --rows 250000 1000000 --precision fp32 bf16 --baselines
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._common import REPO
from bench._common import cpu_name
from bench._common import distinct_comments
from bench._common import load_rows
from bench._common import quick_bundle
from bench._common import write_batch

MB = 1024 * 1024


def make_batch(folder: Path, rows: list[dict], n: int, distinct: bool) -> Path:
    path = folder / f"batch-{n}{'-distinct' if distinct else ''}.parquet"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    write_batch(partial, rows, n, seed=n)
    if distinct:
        table = pq.read_table(partial)
        texts = distinct_comments([r["comentario"] for r in rows], n, seed=n)
        index = table.schema.get_field_index("comentario")
        pq.write_table(table.set_column(index, "comentario", pa.array(texts, pa.string())), partial)
    partial.rename(path)
    return path


def model_files(folder: Path, rows: list[dict], second_features: str) -> dict[str, bytes]:
    """A model trained the project's way (a few epochs), cached in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        for name, data in quick_bundle(rows, second_model_features=second_features).to_files().items():
            (folder / name).write_bytes(data)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------- bare pass
def bare_rows_per_s(files: dict[str, bytes], batch: Path, sample: int, device: str) -> dict[str, float]:
    """rows/s of the networks alone: on the batch's distinct rows, and on a fixed 1024 x 14 tensor."""
    import torch

    from lstm_model.batching import encode_ids
    from lstm_model.batching import unique_rows
    from lstm_model.bundle import ModelBundle
    from lstm_model.predict import Classifier
    from lstm_model.tokenizer import tokenize_arrow

    bundle = ModelBundle.from_files(files)
    texts = pq.read_table(batch, columns=["comentario"])["comentario"].combine_chunks()[:sample]
    tokens = tokenize_arrow(texts)
    encoded, _ = unique_rows(encode_ids(bundle.vocab.encode_arrow(tokens), bundle.max_len))
    # The models' inputs, made before the clock starts: the LSTM's subwords (or stem ids), the
    # second model's n-grams (or the ids), the stems model's ids.
    second_input = bundle.ngrams.encode(tokens, bundle.max_len) if bundle.ngrams else encoded
    lstm_input = bundle.subwords.encode(tokens, bundle.max_len) if bundle.subwords else encoded
    out = {}
    for precision in ("fp32", "bf16"):
        classifier = Classifier.from_bundle(bundle, precision=precision, device=device)
        fixed = fixed_batch(bundle, classifier.device)
        warm = np.arange(min(2048, len(encoded), len(second_input), len(lstm_input)))
        both_models(classifier, lstm_input.take(warm), second_input.take(warm), encoded.take(warm))
        started = time.perf_counter()
        both_models(classifier, lstm_input, second_input, encoded)
        out[f"{classifier.device} batch rows, {precision}"] = len(encoded) / (time.perf_counter() - started)
        lstm = classifier.lstm
        with torch.inference_mode(), classifier._cast():
            lstm(*fixed)
            started, runs = time.perf_counter(), 0
            while time.perf_counter() - started < 3:
                lstm(*fixed)
                runs += 1
        out[f"{classifier.device} 1024 x 14 tokens, LSTM alone, {precision}"] = (
            runs * 1024 / (time.perf_counter() - started)
        )
    return out


def fixed_batch(bundle, device) -> tuple:
    """The reference input of the LSTM alone: 1,024 rows of 14 words. A subword LSTM reads them as
    2,048 distinct words of 12 n-grams each (about what a real batch of that size holds)."""
    import torch

    from lstm_model.subwords import FIRST_WORD
    from lstm_model.subwords import SubwordBatch

    lengths = torch.full((1024,), 14, device=device)
    if bundle.subwords is None:
        return torch.randint(2, len(bundle.vocab), (1024, 14), device=device), lengths
    words, grams = 2048, 12
    batch = SubwordBatch(
        torch.randint(FIRST_WORD, FIRST_WORD + words, (1024, 14)),
        torch.randint(2, len(bundle.subwords), (words * grams,)),
        torch.arange(words) * grams,
    )
    return batch.to(device), lengths


def both_models(classifier, lstm_input, second_input, stem_ids) -> None:
    classifier._run(classifier.lstm, lstm_input, cast=True)
    if classifier.second is not None:
        classifier._run(classifier.second, second_input, cast=False)
    if classifier.stems is not None:  # the stems model beside the n-gram one reads the stem ids
        classifier._run(classifier.stems, stem_ids, cast=False)


# ------------------------------------------------------------------------------------- whole process
def whole_process(
    workdir: Path,
    files: dict[str, bytes],
    batch: Path | None,
    precision: str,
    device: str = "auto",
    extra: tuple[str, ...] = (),
) -> dict:
    """``comentarios score`` on a fresh storage holding the model (and the batch, unless None)."""
    import psutil

    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.storage import Storage

    root = Path(tempfile.mkdtemp(prefix=f"score-{precision}-", dir=workdir))
    storage = Storage(str(root))
    write_version(storage, "bench", {name: data for name, data in files.items() if name != "_COMPLETE"})
    set_latest(storage, "bench")
    (root / "incoming").mkdir()
    if batch is not None:
        os.link(batch, root / "incoming" / batch.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(root / ".prefect"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    command = [sys.executable, "-m", "flows.cli", "score", "--storage", str(root), "--precision", precision,
               "--device", device, *extra]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    main = psutil.Process(proc.pid)
    peak_main = peak_other = 0
    while proc.poll() is None:
        try:
            peak_main = max(peak_main, main.memory_info().rss)
            peak_other = max(peak_other, sum(c.memory_info().rss for c in main.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"comentarios score exited {proc.returncode}:\n{output[-3000:]}")
    chose = re.search(r"in (fp32|bf16|fp16) \((.*?)\)\n", output)
    return {
        "seconds": seconds,
        "peak_main_mb": peak_main / MB,
        "peak_children_mb": peak_other / MB,
        "precision": chose.group(1) if chose else "?",
        "reason": chose.group(2) if chose else "",
        "root": root,
    }


def predictions(root: Path) -> np.ndarray:
    frame = pq.read_table(root / "predictions", columns=["row_number", "categoria_pred"]).to_pandas()
    return frame.sort_values("row_number")["categoria_pred"].to_numpy()


# ---------------------------------------------------------------------------------------- baselines
def reference_rows_per_s(files: dict[str, bytes], batch: Path, sample: int) -> float:
    """The notebook's way: Python regex per row, pad to 512, batch 32, read position 511."""
    import torch

    from lstm_model.bundle import ModelBundle

    bundle = ModelBundle.from_files(files)
    vocab, model = bundle.vocab, bundle.build_model("cpu")
    texts = pq.read_table(batch, columns=["comentario"])["comentario"].to_pylist()[:sample]
    word = re.compile(r"\w+", re.UNICODE)
    started = time.perf_counter()
    with torch.inference_mode():
        for begin in range(0, len(texts), 32):
            ids = []
            for text in texts[begin : begin + 32]:
                row = [vocab.id_of(t) for t in word.findall(text.lower())][:512]
                ids.append(row + [0] * (512 - len(row)))
            model(torch.tensor(ids), torch.full((len(ids),), 512)).argmax(1)
    return len(texts) / (time.perf_counter() - started)


def tfidf_rows_per_s(rows: list[dict], batch: Path) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(TfidfVectorizer(analyzer="word"), LogisticRegression(max_iter=1000))
    pipeline.fit([r["comentario"] for r in rows], [r["categoria"] for r in rows])
    started, n, writer = time.perf_counter(), 0, None
    out = tempfile.mktemp(suffix=".parquet")
    for chunk in pq.ParquetFile(batch).iter_batches(batch_size=131_072, columns=["id", "comentario"]):
        probs = pipeline.predict_proba(chunk.column("comentario").to_pylist())
        table = pa.table({"id": chunk.column("id"), "categoria_pred": pipeline.classes_[probs.argmax(1)].tolist(),
                          "confianza": pa.array(probs.max(1), pa.float32())})  # fmt: skip
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        n += chunk.num_rows
    writer.close()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--precision", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"])
    parser.add_argument("--distinct", action="store_true", help="nearly every row a different token sequence")
    parser.add_argument("--device", nargs="+", default=["auto"], choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--bare-sample", type=int, default=200_000, help="rows of the batch for the bare pass"
    )
    parser.add_argument(
        "--baselines", action="store_true", help="also the reference notebook's way and TF-IDF"
    )
    parser.add_argument(
        "--second-model",
        default="both",
        choices=["auto", "both", "char_ngrams", "stems"],
        help="what the benched model's second model reads (the default: both, n-grams and stems; auto, "
        "with no labels here: stems)",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "comentarios-bench")
    args = parser.parse_args()

    import torch

    from lstm_model.precision import cpu_bf16_flags

    rows = load_rows()
    args.workdir.mkdir(parents=True, exist_ok=True)
    flags = cpu_bf16_flags()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; native bf16: {', '.join(flags) or 'no'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    files = model_files(args.workdir / f"model-{args.second_model}", rows, args.second_model)
    meta = json.loads(files["bundle.json"])
    print(
        f"model: LSTM + second model reading {meta['second_model_features']} (weight {meta['second_model_weight']}"
        f"{', stems ' + str(meta['stems_model_weight']) if 'stems_model_weight' in meta else ''})"
    )
    shutil.rmtree(args.workdir / "prefect-home", ignore_errors=True)
    idle = [whole_process(args.workdir, files, None, "auto") for _ in range(2)]
    for run in idle:
        shutil.rmtree(run["root"])
    print(
        f"start-up of `comentarios score` with nothing to score (imports, Prefect's temporary server): "
        f"{idle[0]['seconds']:.1f} s on a new Prefect database, {idle[1]['seconds']:.1f} s after\n"
    )
    for n in args.rows:
        batch = make_batch(args.workdir, rows, n, args.distinct)
        for device in args.device:
            bare = bare_rows_per_s(files, batch, args.bare_sample, device)
            fastest = max(bare.values())
            print(
                f"{n:,} rows{' (distinct)' if args.distinct else ''}, device {device}: bare forward pass of the same model"
            )
            for name, rate in bare.items():
                print(f"  {name:46s} {rate:>10,.0f} rows/s")
            runs = {}
            for precision in args.precision:
                r = runs[precision] = whole_process(args.workdir, files, batch, precision, device)
                rate = n / r["seconds"]
                print(
                    f"  whole process, --precision {precision:5s} -> {r['precision']}: {rate:>8,.0f} rows/s "
                    f"({r['seconds']:.1f} s, start-up included) = {rate / fastest:.2f}x the faster bare pass; "
                    f"peak RSS {r['peak_main_mb']:.0f} MB (Prefect's temporary server: {r['peak_children_mb']:.0f} MB)"
                )
                print(f"    precision: {r['reason']}", flush=True)  # fmt: skip
            chosen = {r["precision"]: r for r in runs.values()}
            if "fp32" in chosen and "bf16" in chosen:
                a, b = predictions(chosen["fp32"]["root"]), predictions(chosen["bf16"]["root"])
                same = np.mean([x == y or (x is None and y is None) for x, y in zip(a, b, strict=True)])
                print(f"  bf16 predicts the class fp32 predicts on {same:.5%} of {len(a):,} rows")
            for r in runs.values():
                shutil.rmtree(r["root"])
        if args.baselines:
            print(
                f"  reference notebook's way (regex per row, pad 512): {reference_rows_per_s(files, batch, 1000):,.0f} rows/s"
            )
            print(
                f"  scikit-learn TF-IDF (word) + logistic regression: {tfidf_rows_per_s(rows, batch):,.0f} rows/s"
            )
    print("\ntargets: whole process >= 0.35x the faster bare pass, peak RSS < 1 GB at 1M rows")


if __name__ == "__main__":
    main()

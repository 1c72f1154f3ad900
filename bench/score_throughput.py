"""Scoring throughput and memory: Parquet in, Parquet out, on this machine.

What it measures, each in a fresh subprocess so peak RSS belongs to that run alone:
  * ours: ``tasks.scoring.score_file`` (the body of the score-batches task: GX validation, Arrow
    tokenisation, exact de-duplication of token sequences, length-sorted LSTM batches, Parquet
    outputs) on batches of 250k and 1M rows, in fp32 and bf16, with rows/s and peak RSS;
  * the agreement of bf16 with fp32 predictions on the same rows;
  * the reference notebook's way (per-row Python regex tokenisation, every comment padded to 512,
    batch 32, the output read at position 511), on a sample, extrapolated to rows/s;
  * a scikit-learn TF-IDF (word) + logistic-regression scorer, end to end on the same file.

Batches are sampled from the shared dataset, whose texts repeat a lot, so de-duplication helps
ours a great deal; ``--distinct`` drops two random words from every comment to make most rows
distinct and shows the figure without that help. Run with no other load on the machine.

    .venv/bin/python bench/score_throughput.py                 # 250k and 1M rows, fp32 and bf16
    .venv/bin/python bench/score_throughput.py --distinct      # the same, without repeats
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._common import load_rows
from bench._common import quick_bundle
from bench._common import write_batch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(folder: Path, rows: list[dict], n: int, distinct: bool) -> Path:
    path = folder / f"batch-{n}{'-distinct' if distinct else ''}.parquet"
    if path.exists():
        return path
    write_batch(path, rows, n, seed=n)
    if distinct:
        rng = np.random.default_rng(n)
        table = pq.read_table(path)
        texts = table["comentario"].to_pylist()
        out = []
        for text in texts:
            words = text.split()
            drop = set(rng.choice(len(words), size=min(2, len(words) - 1), replace=False).tolist())
            out.append(" ".join(w for i, w in enumerate(words) if i not in drop))
        table = table.set_column(
            table.schema.get_field_index("comentario"), "comentario", pa.array(out, pa.string())
        )
        pq.write_table(table, path, row_group_size=131_072)
    return path


# --------------------------------------------------------------------------- worker (subprocess)
def worker(
    storage_root: str, batch_path: str, precision: str, device: str = "cpu", inference_batch: str = "0"
) -> dict:
    import fsspec

    from flows.configs import ScoreConfig
    from tasks.batches import BatchFile
    from tasks.batches import content_key
    from tasks.scoring import score_file
    from tasks.storage import Storage

    storage = Storage(storage_root)
    fs = fsspec.filesystem("file")
    options = {"inference_batch": int(inference_batch)} if int(inference_batch) else {}
    settings = ScoreConfig(precision=precision, device=device, **options).scoring_settings()
    # Warm-up on a small batch: imports (GX takes seconds), GX context, model load. A nightly run
    # pays this once per process, not per batch.
    started = time.perf_counter()
    warm = Path(storage_root) / "warmup.parquet"
    write_batch(warm, load_rows(), 2_000, seed=99)
    score_file(
        storage,
        BatchFile(str(warm), "warmup.parquet", content_key(fs, str(warm)), warm.stat().st_size),
        "bench",
        settings,
    )
    warmup_s = time.perf_counter() - started
    rss_after_warmup = peak_rss_mb()
    key = content_key(fs, batch_path)
    batch = BatchFile(batch_path, Path(batch_path).name, key, os.path.getsize(batch_path))
    started = time.perf_counter()
    result = score_file(storage, batch, "bench", settings)
    seconds = time.perf_counter() - started
    return {
        "rows": result.rows_in,
        "predicted": result.rows_predicted,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "rss_after_warmup_mb": rss_after_warmup,
        "peak_rss_mb": peak_rss_mb(),
        "key": key,
    }


def run_worker(storage_root: Path, batch: Path, precision: str, device: str, inference_batch: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            str(storage_root),
            str(batch),
            precision,
            device,
            str(inference_batch),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- baselines
def reference_rows_per_s(bundle, batch: Path, sample: int) -> float:
    """The notebook's way: Python regex per row, pad to 512, batch 32, read position 511."""
    import torch

    vocab = bundle.vocab
    model = bundle.build_model("cpu")
    texts = pq.read_table(batch, columns=["comentario"])["comentario"].to_pylist()[:sample]
    word = re.compile(r"\w+", re.UNICODE)
    started = time.perf_counter()
    preds = []
    with torch.inference_mode():
        for begin in range(0, len(texts), 32):
            ids = []
            for text in texts[begin : begin + 32]:
                row = [vocab.id_of(t) for t in word.findall(text.lower())][:512]
                ids.append(row + [0] * (512 - len(row)))
            x = torch.tensor(ids)
            logits = model(x, torch.full((len(ids),), 512))
            preds += logits.argmax(1).tolist()
    labels = np.asarray(bundle.labels, dtype=object)[preds]
    pq.write_table(
        pa.table({"categoria_pred": pa.array(labels.tolist(), pa.string())}),
        tempfile.mktemp(suffix=".parquet"),
    )
    return len(texts) / (time.perf_counter() - started)


def tfidf_rows_per_s(rows: list[dict], batch: Path) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(TfidfVectorizer(analyzer="word"), LogisticRegression(max_iter=1000))
    pipeline.fit([r["comentario"] for r in rows], [r["categoria"] for r in rows])
    started = time.perf_counter()
    parquet = pq.ParquetFile(batch)
    out = tempfile.mktemp(suffix=".parquet")
    writer = None
    n = 0
    for chunk in parquet.iter_batches(batch_size=131_072, columns=["id", "comentario"]):
        texts = chunk.column("comentario").to_pylist()
        probs = pipeline.predict_proba(texts)
        table = pa.table(
            {
                "id": chunk.column("id"),
                "categoria_pred": pa.array(pipeline.classes_[probs.argmax(1)].tolist(), pa.string()),
                "confianza": pa.array(probs.max(1), pa.float32()),
            }
        )
        writer = writer or pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        n += chunk.num_rows
    writer.close()
    return n / (time.perf_counter() - started), peak_rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument(
        "--distinct", action="store_true", help="drop two random words per comment so most rows differ"
    )
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--reference-rows", type=int, default=1_000)
    parser.add_argument(
        "--inference-batch", type=int, default=0, help="rows per forward pass (default: the project's)"
    )
    parser.add_argument(
        "--skip-baselines", action="store_true", help="skip the reference-notebook and TF-IDF figures"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "comentarios-bench")
    args = parser.parse_args()

    import torch

    from tasks.registry import set_latest
    from tasks.registry import write_version
    from tasks.storage import Storage

    rows = load_rows()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu}, {os.cpu_count()} cores")
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = quick_bundle(rows)
    results = []
    for n in args.rows:
        batch = make_batch(args.workdir, rows, n, args.distinct)
        for device, precision in [(d, p) for d in args.device for p in args.precision]:
            storage_root = Path(tempfile.mkdtemp(prefix=f"score-{n}-{device}-{precision}-", dir=args.workdir))
            storage = Storage(str(storage_root))
            write_version(storage, "bench", bundle.to_files())
            set_latest(storage, "bench")
            r = run_worker(storage_root, batch, precision, device, args.inference_batch)
            r.update(n=n, precision=precision, device=device, storage=storage_root)
            results.append(r)
            print(
                f"  ours {device} {precision} {n:>9,} rows: {r['rows'] / r['seconds']:>9,.0f} rows/s  ({r['seconds']:.1f} s; "
                f"start-up {r['warmup_s']:.1f} s once per process)  peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(after start-up {r['rss_after_warmup_mb']:.0f} MB)",
                flush=True,
            )
    by = {(r["n"], r["precision"]): r for r in results if r["device"] == args.device[0]}
    big = max(args.rows)
    if (big, "fp32") in by and (big, "bf16") in by:
        # The two runs wrote to separate storages: read both and compare row by row.
        import pandas as pd

        def predictions(run: dict) -> pd.Series:
            frame = pd.read_parquet(
                run["storage"] / "predictions",
                columns=["batch_key", "row_number", "categoria_pred"],
                filters=[("batch_key", "==", run["key"])],
            )
            return frame.set_index("row_number")["categoria_pred"].sort_index()

        a, b = predictions(by[(big, "fp32")]), predictions(by[(big, "bf16")])
        print(f"  bf16 agrees with fp32 on {float((a == b).mean()):.5%} of {len(a):,} rows")
    print()
    print(f"{'scorer':58s} {'rows/s':>10s}")
    for r in results:
        print(
            f"{'ours, {} {}, {:,} rows, GX + Parquet out'.format(r['device'], r['precision'], r['n']):58s} "
            f"{r['rows'] / r['seconds']:>10,.0f}"
        )
    if args.skip_baselines:
        return
    batch = make_batch(args.workdir, rows, big, args.distinct)
    ref = reference_rows_per_s(bundle, batch, args.reference_rows)
    tfidf, tfidf_rss = tfidf_rows_per_s(rows, batch)
    print(
        f"{'reference notebook way (regex per row, pad 512), ' + format(args.reference_rows, ',') + ' rows':58s} {ref:>10,.0f}"
    )
    print(
        f"{'scikit-learn TF-IDF word + LR, ' + format(big, ',') + ' rows, Parquet out':58s} {tfidf:>10,.0f}"
    )
    print("targets: >= 40,000 rows/s end to end; peak RSS < 1 GB and flat from 250k to 1M rows")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(*sys.argv[2:7])))
    else:
        main()

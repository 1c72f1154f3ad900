"""Scale-out: score-batches over 40 batches of 50,000 rows with a local Dask cluster of 1, then 2 workers.

Runs the real flow (Prefect, GX validation, Parquet in and out) with ``task_runner="dask"``; each run
starts from an empty output folder and the same incoming batches. Prints wall time per run and the
speed-up. On a 2-core machine the ceiling is about 2x, less whatever the flow process itself uses.

    .venv/bin/python bench/scale_out.py                      # 40 x 50k rows, 1 and 2 workers
    .venv/bin/python bench/scale_out.py --batches 10 --rows 20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "comentarios-scale-out")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-bench-"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from bench._common import load_rows
    from bench._common import quick_bundle
    from bench._common import write_batch
    from flows.configs import ScoreConfig
    from flows.score import score_batches
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.storage import Storage

    rows = load_rows()
    incoming = args.workdir / "incoming"
    if len(list(incoming.glob("*.parquet"))) != args.batches:
        shutil.rmtree(incoming, ignore_errors=True)
        for i in range(args.batches):
            write_batch(incoming / f"batch-{i:03d}.parquet", rows, args.rows, seed=1000 + i)
    bundle = quick_bundle(rows, epochs=2)
    timings: dict[int, float] = {}
    for workers in args.workers:
        root = args.workdir / f"storage-{workers}"
        shutil.rmtree(root, ignore_errors=True)
        storage = Storage(str(root))
        write_version(storage, "bench", bundle.to_files())
        set_latest(storage, "bench")
        started = time.perf_counter()
        summary = score_batches(
            ScoreConfig(
                storage=str(root), input=str(incoming), task_runner="dask", workers=workers, min_file_age=0
            )
        )
        timings[workers] = time.perf_counter() - started
        print(
            f"{workers} worker(s): {timings[workers]:7.1f} s for {len(summary.scored)} batches, "
            f"{summary.rows_in:,} rows ({summary.rows_in / timings[workers]:,.0f} rows/s, Dask start-up included)",
            flush=True,
        )
    base = timings.get(min(timings))
    for workers, seconds in timings.items():
        print(f"speed-up with {workers} worker(s): {base / seconds:.2f}x")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()

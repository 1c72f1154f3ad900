"""Bytes an idle ``comentarios score`` rerun reads over about 200 MB of batches it has scored already.

Writes ``--batches`` Parquet files of about ``--megabytes`` MB in all under a temporary storage root
(rows of the shared dataset with fresh ids and an incompressible ``adjunto`` column, so the bytes are
real), publishes a small model there, scores them once, then runs ``comentarios score`` again with
nothing new. Each run is a subprocess that reports its own ``rchar`` from ``/proc/self/io`` at
exit: every byte the process read through read(2)-like calls (files, sockets), page cache or not.
Python's imports and starting Prefect's temporary API server are read by any run (tens of MB), so
the child also reports rchar once those are done, and the same command over a storage root holding
only the model is measured too: the difference is what the batches cost.

    .venv/bin/python bench/idle_rerun_io.py                     # 200 MB in 40 batches
    .venv/bin/python bench/idle_rerun_io.py --megabytes 50 --batches 10
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._common import load_rows
from bench._common import quick_bundle
from bench._common import run_python

CHILD = """
import sys

def rchar():
    return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["rchar"])

import os
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
import flows.score  # what any scoring run imports (Prefect, torch, pandas, pyarrow)
from flows.cli import main
from flows.prefect_api import start_temporary_api
server = start_temporary_api()  # Prefect's temporary API server (main() finds it running); a deployment has a real one
if server:
    server.join()
imported = rchar()
code = main(sys.argv[1:])
print("RCHAR", rchar(), imported)
sys.exit(code)
"""


def write_batches(incoming: Path, rows: list[dict], batches: int, megabytes: int) -> int:
    """``batches`` Parquet files of ``megabytes`` MB in all; returns their total size in bytes."""
    rng = np.random.default_rng(0)
    table = pa.Table.from_pylist(rows)
    per_file = (megabytes << 20) // batches
    attachment = 1_500  # bytes of random base64 per row: the files do not compress away
    n = max(1, per_file // (attachment * 3 // 4 + 70))  # zstd takes base64 back to about 3/4
    for b in range(batches):
        part = table.take(pa.array(rng.integers(0, len(rows), n)))
        part = part.set_column(
            part.schema.get_field_index("id"), "id", pa.array([f"io-{b}-{i}" for i in range(n)])
        )
        blobs = [base64.b64encode(rng.bytes(attachment * 3 // 4)).decode() for _ in range(n)]
        path = incoming / f"day{b % 7}" / f"batch-{b:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part.append_column("adjunto", pa.array(blobs)), path, compression="zstd")
    return sum(p.stat().st_size for p in incoming.rglob("*.parquet"))


def run_score(root: Path, home: Path) -> tuple[int, int]:
    """``comentarios score --storage root`` in a subprocess; its rchar at exit and after its imports."""
    total, imports = run_python(
        CHILD, ["score", "--storage", str(root), "--min-file-age", "0"], home, "RCHAR"
    ).split()
    return int(total), int(imports)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.storage import Storage

    rows = load_rows()
    bundle = quick_bundle(rows, epochs=1)
    with tempfile.TemporaryDirectory(prefix="comentarios-bench-") as tmp:
        tmp_path = Path(tmp)
        empty, root = tmp_path / "model-only", tmp_path / "storage"
        write_version(Storage(str(empty)), bundle.version, bundle.to_files())
        set_latest(Storage(str(empty)), bundle.version)
        shutil.copytree(empty, root)
        (empty / "incoming").mkdir()
        size = write_batches(root / "incoming", rows, args.batches, args.megabytes)
        home = tmp_path / "prefect-home"
        first, _ = run_score(root, home)
        idle, idle_imports = run_score(root, home)
        baseline, _ = run_score(empty, home)
        print(
            json.dumps(
                {
                    "batches": args.batches,
                    "batch_bytes": size,
                    "first_run_rchar": first,
                    "idle_rerun_rchar": idle,
                    "idle_rerun_rchar_after_imports": idle - idle_imports,
                    "no_batches_rchar": baseline,
                }
            )
        )
        mb = 2**20
        print(
            f"{args.batches} scored batches, {size / mb:,.1f} MB. Idle rerun: rchar {idle / mb:,.1f} MB in all, "
            f"{idle_imports / mb:,.1f} MB of it Python's imports and starting Prefect's temporary server; "
            f"the run itself {(idle - idle_imports) / mb:,.1f} MB = {100 * (idle - idle_imports) / size:.1f}% "
            f"of the batches' bytes (the model's files, the listing, the index, the API). The same run over "
            f"no batches read {baseline / mb:,.1f} MB, so the batches "
            f"cost {(idle - baseline) / mb:,.2f} MB = {100 * (idle - baseline) / size:.2f}% of their bytes. "
            f"(The first run, which scored them, read {first / mb:,.1f} MB.)"
        )


if __name__ == "__main__":
    main()

"""Peak memory of training on a large JSON source: the data preparation, then the whole
``comentarios train`` run.

Makes a JSON array of about ``--megabytes`` MB from ../shared/data/comentarios_train.json (its
records repeated, each with a fresh id, pretty-printed like the original; ``--rows`` fixes the count instead, default 664k)
in a temporary folder, and the same records as JSON Lines; then, for each, runs the training flow's
data preparation (``flows.train.prepare_data``: fetch, parse, Great Expectations validation,
stratified split) in a fresh subprocess under a Prefect flow and prints that process's peak RSS,
next to the RSS of the same process after its imports (what the data costs is the difference).

Then (unless ``--no-train``) the whole ``comentarios train --source <the JSON array>`` as an operator
runs it, in a subprocess of its own: its peak RSS is the largest ``ru_maxrss`` among the finished
children of this script (``resource.getrusage(RUSAGE_CHILDREN)``; the temporary Prefect server the
CLI starts is one of them, and is far smaller). ``--train-args`` are passed to it (default
``--epochs 1 --batch-size 256``: one LSTM epoch in batches of 256 (default 64), to keep the run short;
the data, vocabulary, encoded texts, both bag models and the domain phrases are the same as in a full run,
only the number of LSTM optimiser steps differs; a batch of 2048 would add ~400 MB of activations).
Nothing is written outside the temporary folder.

    .venv/bin/python bench/training_input_memory.py                  # 664k rows
    .venv/bin/python bench/training_input_memory.py --rows 0 --megabytes 50 --no-train
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO
from bench._common import cpu_name
from bench._common import load_rows
from bench._common import run_python

CHILD = """
import json, resource, sys, time
from prefect import flow
from flows.configs import TrainConfig
from flows.train import prepare_data

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

@flow(name="training-input-bench")
def stage(config: TrainConfig) -> dict:
    imports = peak_mb()
    started = time.perf_counter()
    checked, _, splits = prepare_data(config)
    return {"imports_mb": imports, "rows": len(checked.valid), "rejected": len(checked.rejected),
            "splits": {k: len(v) for k, v in splits.items()}, "seconds": time.perf_counter() - started}

result = stage(TrainConfig(source=sys.argv[1], storage=sys.argv[2]))
print("RESULT " + json.dumps({**result, "peak_mb": peak_mb()}))
"""


def make_sources(folder: Path, megabytes: int, rows_wanted: int | None = None) -> tuple[Path, Path]:
    """A pretty-printed JSON array of about ``megabytes`` MB (or of ``rows_wanted`` records) and the
    same records as JSON Lines."""
    rows = load_rows()
    target = megabytes << 20 if rows_wanted is None else float("inf")
    rows_wanted = rows_wanted or 0
    array, lines = folder / "comentarios_big.json", folder / "comentarios_big.jsonl"
    size = n = 0
    with array.open("w", encoding="utf-8") as out, lines.open("w", encoding="utf-8") as out_lines:
        out.write("[\n")
        first = True
        while size < target:
            for row in rows:
                record = {**row, "id": str(uuid.uuid4())}
                text = ("" if first else ",\n") + json.dumps(record, ensure_ascii=False, indent=1)
                out.write(text)
                out_lines.write(json.dumps(record, ensure_ascii=False) + "\n")
                size += len(text.encode())
                first = False
                n += 1
                if size >= target or n == rows_wanted:
                    break
            if n == rows_wanted:
                break
        out.write("\n]\n")
    print(f"{array.name}: {n:,} records, {array.stat().st_size / 2**20:,.0f} MB", flush=True)
    return array, lines


def measure(source: Path, workdir: Path) -> dict:
    return json.loads(
        run_python(CHILD, [str(source), str(workdir / "storage")], workdir / "prefect-home", "RESULT")
    )


def measure_train(source: Path, workdir: Path, train_args: list[str]) -> tuple[float, float, str]:
    """Run ``comentarios train`` on ``source`` in a fresh process: (peak RSS in MB, seconds, last lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        {
            "PREFECT_HOME": str(workdir / "prefect-home-train"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    # `python -m flows.cli` is the `comentarios` entry point, run from this checkout (REPO)
    command = [sys.executable, "-m", "flows.cli", "train", "--source", str(source)]
    command += ["--storage", str(workdir / "storage-train"), *train_args]
    print("+ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    if done.returncode:
        raise SystemExit(
            f"comentarios train failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
        )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return peak, seconds, tail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=221)
    parser.add_argument(
        "--rows", type=int, default=664_000, help="records to write (0: --megabytes decides); 664k ~ 238 MB"
    )
    parser.add_argument("--no-prepare", action="store_true", help="skip the data-preparation measures")
    parser.add_argument("--no-train", action="store_true", help="skip the whole `comentarios train` run")
    parser.add_argument(
        "--train-args",
        default="--epochs 1 --batch-size 256",
        help="extra flags for comentarios train (default: one LSTM epoch in batches of 256 (default 64); everything "
        "else, both bag models and the domain phrases included, as configured by default: a 664k-row epoch at "
        "batch 64 took over 30 min on a loaded 2-core machine)",
    )
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="comentarios-bench-") as tmp:
        folder = Path(tmp)
        array, lines = make_sources(folder, args.megabytes, args.rows or None)
        if not args.no_train:  # first: RUSAGE_CHILDREN keeps the largest child, so no other child yet
            peak, seconds, tail = measure_train(array, folder, shlex.split(args.train_args))
            print(
                f"comentarios train on {array.name} ({array.stat().st_size / 2**20:,.0f} MB): "
                f"peak RSS {peak:,.0f} MB, {seconds:.0f} s\n{tail}",
                flush=True,
            )
        for source in () if args.no_prepare else (array, lines):
            result = measure(source, folder)
            print(
                f"{source.name}: {source.stat().st_size / 2**20:,.0f} MB, {result['rows']:,} valid rows "
                f"(splits {result['splits']}): peak RSS {result['peak_mb']:,.0f} MB "
                f"({result['imports_mb']:,.0f} MB after imports; data preparation {result['seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()

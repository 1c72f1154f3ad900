"""Peak memory of the training input on a 200 MB JSON source: everything before training starts.

Makes a JSON array of about ``--megabytes`` MB from ../shared/data/comentarios_train.json (its
records repeated, each with a fresh id, pretty-printed like the original) in a temporary folder,
and the same records as JSON Lines; then, for each, runs the training flow's data preparation
(``flows.train.prepare_data``: fetch, parse, Great Expectations validation, stratified split) in a
fresh subprocess under a Prefect flow and prints that process's peak RSS, next to the RSS of the
same process after its imports (what the data costs is the difference). Nothing is written
outside the temporary folder.

    .venv/bin/python bench/training_input_memory.py                 # 200 MB
    .venv/bin/python bench/training_input_memory.py --megabytes 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def make_sources(folder: Path, megabytes: int) -> tuple[Path, Path]:
    """A pretty-printed JSON array of about ``megabytes`` MB and the same records as JSON Lines."""
    rows = load_rows()
    target = megabytes << 20
    array, lines = folder / "comentarios_big.json", folder / "comentarios_big.jsonl"
    size = 0
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
                if size >= target:
                    break
        out.write("\n]\n")
    return array, lines


def measure(source: Path, workdir: Path) -> dict:
    return json.loads(
        run_python(CHILD, [str(source), str(workdir / "storage")], workdir / "prefect-home", "RESULT")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comentarios-bench-") as tmp:
        folder = Path(tmp)
        array, lines = make_sources(folder, args.megabytes)
        for source in (array, lines):
            result = measure(source, folder)
            print(
                f"{source.name}: {source.stat().st_size / 2**20:,.0f} MB, {result['rows']:,} valid rows "
                f"(splits {result['splits']}): peak RSS {result['peak_mb']:,.0f} MB "
                f"({result['imports_mb']:,.0f} MB after imports; data preparation {result['seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()

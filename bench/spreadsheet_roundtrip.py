"""The review export opened in LibreOffice with a Spanish (es-ES) locale, and the filled file read back.

What the issue saw: in a Spanish-locale LibreOffice a CSV confidence ``0.518`` opens as **518**
(``.`` is the thousands separator there) and a comment ``=1+1`` is evaluated. This script exports
hostile rows (formulas, leading ``- + @`` tab CR, line breaks, ids such as ``-5`` and ``00123``) three
ways: the CSV as written before (pandas, unquoted, raw confidences), the safe CSV and the XLSX
(``tasks/feedback/spreadsheet.py``). LibreOffice (headless, a fresh profile whose locale is es-ES) opens
each and saves it as XLSX; openpyxl then reads what LibreOffice understood: cell types, numbers,
formulas. Then the analyst's loop: ``categoria`` filled in, the file opened and saved by
LibreOffice (as XLSX, and as a ``;`` CSV as a Spanish LibreOffice saves it), and read by the label
reader, which must give back every exported id and comment.

Needs ``soffice`` (Debian: ``apt-get install libreoffice-calc-nogui``); CI does not install it, so
this is a bench check, not a test (the pytest side is ``tests/test_review_export_files.py``).
``--screens DIR`` also renders the XLSX as LibreOffice es-ES shows it (PDF, then ``pdftoppm``).

    .venv/bin/python bench/spreadsheet_roundtrip.py --screens /work/screens
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import pyarrow as pa

from bench._common import cpu_name
from tasks.common.schema import CATEGORIES
from tasks.feedback.labels import read_label_file
from tasks.feedback.review_export import export_review
from tasks.feedback.review_export import order_for_labelling
from tasks.feedback.review_export import read_review_queue
from tasks.feedback.spreadsheet import restore_text
from tasks.scoring.outputs import review_schema
from tasks.store.layout import REVIEW
from tasks.store.storage import Storage
from tasks.store.tables import write_part

HOSTILE = [  # (id, comentario, confianza)
    ("-5", "=1+1", 0.518),
    ("=x", '=HYPERLINK("http://example.invalid/?q=1","pulse aquí")', 0.4444),
    ("+34600", "+34 600 000 000 no contesta nadie", 0.3333),
    ("@a", "@usuario el pedido no llega", 0.61),
    ("'=y", "'=ya empezaba con comilla", 0.55),
    ("t1", "\tempieza con tabulador", 0.52),
    ("cr1", "\rempieza con retorno de carro", 0.5),
    ("nl1", 'línea 1\nlínea 2, con "comillas" y ; punto y coma', 0.47),
    ("n1", "-barato no es", 0.45),
    ("00123", "el id tiene ceros delante", 0.999),
    ("plain", "la app se cierra", 0.25),
]
PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooSetupSystemLocale" oor:op="fuse">
<value>{locale}</value></prop></item>
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooLocale" oor:op="fuse"><value>{locale}</value></prop></item>
</oor:items>
"""
SEMICOLON_CSV = "csv:Text - txt - csv (StarCalc):59,34,76,1"  # ; separated, "quoted", UTF-8


def review_storage(root: Path) -> Storage:
    storage = Storage(str(root))
    n = len(HOSTILE)
    labels = list(CATEGORIES)
    table = pa.table(
        {
            "id": [i for i, _, _ in HOSTILE],
            "comentario": [t for _, t, _ in HOSTILE],
            "categoria_pred": ["logistica"] * n,
            "confianza": pa.array([c for _, _, c in HOSTILE], pa.float32()),
            "review_reason": ["low_confidence"] * n,
            "model_version": ["v1"] * n,
            "batch": ["day1/b.parquet"] * n,
            **{f"prob_{label}": pa.array([0.25] * n, pa.float32()) for label in labels},
            "batch_key": ["k1"] * n,
            "row_number": list(range(n)),
            "scored_at": pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
            "categoria": pa.nulls(n, pa.string()),
        }
    )
    schema = review_schema(labels)
    write_part(
        storage, REVIEW, datetime(2026, 3, 1, tzinfo=UTC), "k1", 0, table.select(schema.names).cast(schema)
    )
    return storage


class Office:
    """soffice with a throw-away profile in one locale."""

    def __init__(self, work: Path, locale: str) -> None:
        self.profile = work / f"profile-{locale}"
        (self.profile / "user").mkdir(parents=True, exist_ok=True)
        (self.profile / "user" / "registrymodifications.xcu").write_text(PROFILE.format(locale=locale))
        self.lang = locale.replace("-", "_") + ".UTF-8"

    def convert(self, source: Path, to: str, outdir: Path) -> Path:
        """Open ``source`` and save it as ``to``. A CSV is opened as the import dialog does with
        "UTF-8" chosen, the separator ``,`` or ``;`` and the language left at the default (the
        profile's locale), formulas evaluated (the dialog's "Evaluate formulas", LibreOffice's
        default on a headless open)."""
        outdir.mkdir(parents=True, exist_ok=True)
        infilter = []
        if source.suffix == ".csv":
            separator = "59" if b";" in source.read_bytes().split(b"\n", 1)[0] else "44"
            infilter = [f"--infilter=CSV:{separator},34,76,1,,,false,true,,,false,,true"]
        command = [
            "soffice",
            f"-env:UserInstallation=file://{self.profile}",
            "--headless",
            *infilter,
            "--convert-to",
            to,
            "--outdir",
            str(outdir),
            str(source),
        ]
        env = {"LANG": self.lang, "LC_ALL": self.lang, "HOME": str(self.profile), "PATH": "/usr/bin:/bin"}
        subprocess.run(command, check=True, capture_output=True, timeout=180, env=env)
        suffix = "." + to.split(":")[0]
        (made,) = [p for p in outdir.iterdir() if p.stem == source.stem and p.suffix == suffix]
        return made


def cells(xlsx: Path) -> list[dict[str, tuple[object, str]]]:
    """Rows of the first sheet as {column: (value, openpyxl data type)}; 'f' = a formula."""
    from openpyxl import load_workbook

    sheet = load_workbook(xlsx).worksheets[0]
    rows = list(sheet.iter_rows())
    header = [str(c.value or "").lstrip("\ufeff") for c in rows[0]]
    return [{h: (c.value, c.data_type) for h, c in zip(header, row, strict=False)} for row in rows[1:]]


def what_office_read(rows: list[dict], id_column: str, conf_column: str, restore: bool) -> dict:
    """Formulas, confidences and comments as LibreOffice took them, per exported id."""
    originals = {i: (t, c) for i, t, c in HOSTILE}
    formulas = sum(1 for r in rows for v, kind in r.values() if kind == "f")
    found = {}
    for r in rows:
        raw_id = r.get(id_column, (None,))[0]
        key = restore_text(str(raw_id)) if restore else str(raw_id)
        found[key] = r
    conf_ok = comment_ok = 0
    conf_seen = {}
    for i, (text, confidence) in originals.items():
        row = found.get(i)
        if row is None:
            continue
        value = row.get(conf_column, (None,))[0]
        conf_seen[i] = value
        expected = (
            (round(confidence * 100, 1), round(confidence * 100)) if "pct" in conf_column else (confidence,)
        )
        conf_ok += isinstance(value, int | float) and any(abs(float(value) - e) < 1e-6 for e in expected)
        got = row.get("comentario", (None,))[0]
        got = restore_text(got) if restore and isinstance(got, str) else got
        comment_ok += got == text or (
            isinstance(got, str) and got.replace("\r", "\n") == text.replace("\r", "\n")
        )
    return {
        "rows": len(rows),
        "ids found": f"{len(set(found) & set(originals))}/{len(originals)}",
        "formula cells": formulas,
        "confidences as given": f"{conf_ok}/{len(originals)}",
        "comments as given": f"{comment_ok}/{len(originals)}",
        "confidence of id -5 (0.518)": conf_seen.get("-5"),
    }


def old_csv(storage: Storage) -> bytes:
    """The export as written before this change: pandas' default CSV, raw confidences."""
    rows = order_for_labelling(read_review_queue(storage))
    rows = rows.rename(columns={"confianza_pct": "confianza"}).assign(confianza=rows["confianza_pct"] / 100)
    return rows.to_csv(index=False).encode("utf-8-sig")


def fill_csv(path: Path, out: Path) -> None:
    """The analyst types a class into every categoria cell of the safe CSV (cells kept as exported)."""
    records = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    at = records[0].index("categoria")
    for record in records[1:]:
        record[at] = "Logística"
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(records)
    out.write_bytes(text.getvalue().encode("utf-8-sig"))


def fill_xlsx(path: Path, out: Path) -> None:
    from openpyxl import load_workbook

    book = load_workbook(path)
    sheet = book.worksheets[0]
    at = [c.value for c in sheet[1]].index("categoria")
    for row in sheet.iter_rows(min_row=2):
        row[at].value = "Logística"
    book.save(out)


def labels_read_back(path: Path) -> str:
    """ids and comments the label reader gets from a file LibreOffice saved, against the export."""
    frame = read_label_file(path.name, path.read_bytes())
    got = dict(zip(frame["id"].astype(str), frame["comentario"], strict=True))
    originals = {i: t for i, t, _ in HOSTILE}
    ids = sum(i in got for i in originals)
    same = sum(got.get(i, "").replace("\r", "\n") == t.replace("\r", "\n") for i, t in originals.items())
    labelled = int((frame["categoria"].astype(str).str.strip() != "").sum())
    return f"ids {ids}/{len(originals)}, comments {same}/{len(originals)}, categoria filled {labelled}/{len(frame)}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--screens", type=Path, default=None, help="Write the XLSX as LibreOffice es-ES shows it."
    )
    parser.add_argument("--locale", default="es-ES")
    args = parser.parse_args()
    if shutil.which("soffice") is None:
        print("soffice not found: apt-get install -y libreoffice-calc-nogui", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="spreadsheet-roundtrip-"))
    storage = review_storage(work / "storage")
    office = Office(work, args.locale)
    exports = work / "exports"
    exports.mkdir()
    (exports / "before.csv").write_bytes(old_csv(storage))
    export_review(storage, str(exports / "revision.csv"))
    export_review(storage, str(exports / "revision.xlsx"))
    print(
        f"LibreOffice {subprocess.run(['soffice', '--version'], capture_output=True, text=True).stdout.split()[1]}"
        f", locale {args.locale}; CPU: {cpu_name()}"
    )
    results = {
        "CSV as before (pandas default)": what_office_read(
            cells(office.convert(exports / "before.csv", "xlsx", work / "opened" / "before")),
            "id",
            "confianza",
            False,
        ),
        "safe CSV": what_office_read(
            cells(office.convert(exports / "revision.csv", "xlsx", work / "opened" / "csv")),
            "id",
            "confianza_pct",
            True,
        ),
        "XLSX": what_office_read(
            cells(office.convert(exports / "revision.xlsx", "xlsx", work / "opened" / "xlsx")),
            "id",
            "confianza_pct",
            False,
        ),
    }
    print(pd.DataFrame(results).T.to_string())
    print("\nThe analyst's loop (categoria filled in, saved by LibreOffice, read by the label reader):")
    filled = work / "filled"
    filled.mkdir()
    fill_csv(exports / "revision.csv", filled / "revision.csv")
    fill_xlsx(exports / "revision.xlsx", filled / "revision.xlsx")
    loop = {
        "safe CSV -> LibreOffice -> ';' CSV": office.convert(
            filled / "revision.csv", SEMICOLON_CSV, work / "saved" / "csv-csv"
        ),
        "XLSX -> LibreOffice -> XLSX": office.convert(
            filled / "revision.xlsx", "xlsx", work / "saved" / "xlsx-xlsx"
        ),
        "XLSX -> LibreOffice -> ';' CSV": office.convert(
            filled / "revision.xlsx", SEMICOLON_CSV, work / "saved" / "xlsx-csv"
        ),
    }
    for name, path in loop.items():
        print(f"  {name}: {labels_read_back(path)}")
    if args.screens:
        args.screens.mkdir(parents=True, exist_ok=True)
        whole_sheet = 'pdf:calc_pdf_Export:{"SinglePageSheets":{"type":"boolean","value":"true"}}'
        print()
        for name, shot in (
            ("revision.xlsx", "xlsx"),
            ("revision.csv", "csv_safe"),
            ("before.csv", "csv_before"),
        ):
            pdf = office.convert(exports / name, whole_sheet, work / "pdf" / shot)
            target = args.screens / f"review_export_{shot}_{args.locale}"
            subprocess.run(
                ["pdftoppm", "-png", "-r", "110", "-singlefile", str(pdf), str(target)], check=True
            )
            print(f"screenshot: {target}.png")
    # The safe CSV may lose only the all-digit id 00123 (read as the number 123: see tasks/feedback/spreadsheet.py).
    expected = {"safe CSV": len(HOSTILE) - 1, "XLSX": len(HOSTILE)}
    safe = all(
        results[k]["formula cells"] == 0
        and int(results[k]["confidences as given"].split("/")[0]) == n
        and int(results[k]["comments as given"].split("/")[0]) == n
        for k, n in expected.items()
    )
    print(f"\nsafe exports read as given: {safe}; files under {work}")
    return 0 if safe else 1


if __name__ == "__main__":
    sys.exit(main())

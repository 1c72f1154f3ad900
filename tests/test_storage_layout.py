"""The storage layout training creates: the README's quick start (`train`, then `cp batch X/incoming/`)
works on a new local root, and on S3 nothing is written (folders are key prefixes there)."""

from __future__ import annotations

import shutil

from tasks.store.folders import create_layout
from tasks.store.layout import PEOPLE_FOLDERS
from tasks.store.storage import Storage

pytest_plugins = ("s3_support",)


def test_a_new_local_root_gets_the_folders_people_use(tmp_path):
    root = tmp_path / "new" / "storage"  # the root itself does not exist yet either
    assert create_layout(Storage(str(root))) == ["incoming", "labels", "exports"]
    assert sorted(p.name for p in root.iterdir()) == sorted(PEOPLE_FOLDERS)
    # The quick start's next step: copying a batch *into* incoming/ (cp to a missing folder fails).
    batch = tmp_path / "my_batch.parquet"
    batch.write_bytes(b"PAR1")
    shutil.copy(batch, root / "incoming/")
    assert (root / "incoming" / "my_batch.parquet").is_file()


def test_existing_folders_and_their_files_are_left_alone(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.csv").write_text("id,comentario,categoria\n")
    assert create_layout(Storage(str(tmp_path))) == ["incoming", "exports"]
    assert create_layout(Storage(str(tmp_path))) == []
    assert (tmp_path / "labels" / "a.csv").read_text() == "id,comentario,categoria\n"


def test_on_s3_nothing_is_written(s3_server, s3_prefix):
    storage = Storage(s3_prefix / "store", s3_server.endpoint)
    assert create_layout(storage) == []
    assert s3_prefix.keys() == []  # no zero-byte "folder" objects that a listing would show as files
    # and a batch copied under incoming/ is found as the only input file
    s3_server.put(f"{s3_prefix.key}/store/incoming/b.parquet", b"PAR1")
    root, files = storage.list_files(storage.uri("incoming"))
    assert [f.rsplit("/", 1)[-1] for f in files] == ["b.parquet"]

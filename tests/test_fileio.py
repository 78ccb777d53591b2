"""visualbert.fileio: atomic writes keep the old content on error, leave no temporary file, and honour the umask."""

import json
import os
import stat

import numpy as np
import pytest

from visualbert.fileio import read_jsonl, replace_dir, save_npy, write_json, write_jsonl


def test_write_json_converts_numpy_and_keeps_old_content_on_error(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    write_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(path.read_text()) == {"acc": 0.5, "n": 3, "v": [0, 1]}
    write_json(path, {"acc": 0.75})
    assert json.loads(path.read_text()) == {"acc": 0.75}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"acc": 0.75}  # old content intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        save_npy(str(tmp_path / "b.npy"), np.zeros(2))
    finally:
        os.umask(old)
    for name in ("a.json", "b.npy"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_save_npy_writes_exactly_the_given_name(tmp_path):
    save_npy(str(tmp_path / "x.feat"), np.arange(3, dtype=np.float32))
    assert os.listdir(tmp_path) == ["x.feat"]
    np.testing.assert_array_equal(np.load(tmp_path / "x.feat"), [0, 1, 2])


def test_jsonl_round_trip_and_annotation_line_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"b": 1, "a": 2}, {"a": 3}])
    assert path.read_text() == '{"a": 2, "b": 1}\n{"a": 3}\n'
    assert read_jsonl(path) == [{"a": 2, "b": 1}, {"a": 3}]
    assert [r["_line"] for r in read_jsonl(path, ("a",), "test file")] == [1, 2]


def test_replace_dir_swaps_a_whole_directory(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / "tmp"
    final.mkdir()
    (final / "old.txt").write_text("old")
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    replace_dir(str(tmp), str(final))
    assert os.listdir(final) == ["new.txt"] and not tmp.exists()
    assert sorted(os.listdir(tmp_path)) == ["final"]

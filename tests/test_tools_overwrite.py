"""The tools that write a store, a feature root, a dataset or an export refuse to replace an existing one without
--overwrite (one ``error:`` line, exit 2, nothing on disk changed), and check their input before writing.
(checkpoint/convert.py: tests/test_conversion.py::test_existing_destination_needs_overwrite.)"""

import importlib.util
import os

import numpy as np
import pytest

from visualbert.data import DataFormatError, open_feature_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture
def flat_features(tmp_path):
    root = tmp_path / "feats"
    root.mkdir()
    for i in range(3):
        np.save(root / f"img{i}.npy", np.full((2, 8), i, np.float32))
    return str(root)


def test_pack_features_refuses_an_existing_store(tmp_path, flat_features, capsys):
    pack = load_tool("pack_features").main
    out = str(tmp_path / "packed")
    assert pack(["--features", flat_features, "--out", out, "--quiet"]) == 0
    before = snapshot(out)
    np.save(os.path.join(flat_features, "img9.npy"), np.full((2, 8), 9, np.float32))
    capsys.readouterr()
    assert pack(["--features", flat_features, "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pack_features.py: error: ") and "already holds a packed store" in err and "\n" not in err
    assert snapshot(out) == before
    assert pack(["--features", flat_features, "--out", out, "--quiet", "--overwrite"]) == 0
    assert "img9" in open_feature_store(out).keys()


def test_pack_features_refuses_an_output_inside_its_source(flat_features, capsys):
    pack = load_tool("pack_features").main
    before = snapshot(flat_features)
    for out in (flat_features, os.path.join(flat_features, "packed")):
        assert pack(["--features", flat_features, "--out", out, "--quiet", "--overwrite"]) == 2
        assert "is inside the feature root" in capsys.readouterr().err
    assert snapshot(flat_features) == before


def test_pack_features_bad_array_is_one_line(tmp_path, flat_features, capsys):
    bad = np.ones((2, 8), np.float32)
    bad[1, 3] = np.inf
    np.save(os.path.join(flat_features, "img1.npy"), bad)
    assert load_tool("pack_features").main(["--features", flat_features, "--out", str(tmp_path / "p"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "img1.npy: 1 non-finite value(s)" in err and "\n" not in err


def _dump(torch, path, feats):
    torch.save({f"dev-1-{i}-img0.png": (torch.from_numpy(f), torch.zeros(len(f), 4), torch.ones(len(f)))
                for i, f in enumerate(feats)}, path)


def test_convert_th_refuses_existing_files_and_checks_before_writing(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    tool = load_tool("convert_th_features")
    good = [np.full((5, 8), i, np.float32) for i in range(3)]
    th = str(tmp_path / "features_dev_150.th")
    _dump(torch, th, good)
    out = str(tmp_path / "detectron_fix_144")
    assert tool.main(["--th", th, "--out", out, "--quiet"]) == 0
    before = snapshot(out)
    assert tool.main(["--th", th, "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "3 of the 3 output files" in err and "--overwrite" in err and "\n" not in err
    assert snapshot(out) == before
    assert tool.main(["--th", th, "--out", out, "--quiet", "--overwrite"]) == 0

    # a NaN in the last entry: nothing at all is written
    poisoned = good[:2] + [np.where(np.arange(40).reshape(5, 8) == 17, np.nan, 1.0).astype(np.float32)]
    th2 = str(tmp_path / "features_bad_150.th")
    _dump(torch, th2, poisoned)
    fresh = str(tmp_path / "fresh")
    with pytest.raises(DataFormatError, match=r"'dev-1-2-img0.png'\]: 1 non-finite value\(s\)"):
        tool.convert(th2, fresh, progress=False)
    assert not os.path.exists(fresh)
    torch.save({"dev-1-0-img0.png": torch.ones(3, 8, dtype=torch.int64)}, th2)
    with pytest.raises(DataFormatError, match="expected float features, got dtype int64"):
        tool.convert(th2, fresh, progress=False)


TINY_SYNTH = ["--tasks", "nlvr2", "--nlvr2_sets", "5", "--nlvr2_regions", "2", "--nlvr2_dim", "32", "--quiet"]


def test_make_synthetic_data_never_replaces_what_it_did_not_write(tmp_path, capsys):
    make = load_tool("make_synthetic_data").main
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    assert make(["--out", str(user), "--overwrite"] + TINY_SYNTH) == 2
    assert "holds no synthetic dataset" in capsys.readouterr().err
    assert os.listdir(user) == ["thesis.tex"]

    out = tmp_path / "synth"
    assert make(["--out", str(out)] + TINY_SYNTH) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(str(out))
    assert make(["--out", str(out)] + TINY_SYNTH) == 2
    assert "already holds a synthetic dataset; pass --overwrite" in capsys.readouterr().err
    assert snapshot(str(out)) == before
    # --overwrite: the generated entries are replaced (no stale files of the larger run), others are kept
    assert make(["--out", str(out), "--overwrite"] + TINY_SYNTH[:-1] + ["--nlvr2_sets", "3", "--quiet"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert snapshot(str(out)) != before
    features = [n for _, _, files in os.walk(out / "detectron_fix_144") for n in files]
    assert 0 < len(features) < len([k for k in before if k.startswith("detectron_fix_144")])


def test_export_model_refuses_an_existing_export(tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export.json").write_text("{}")
    (out / "model.pdiparams").write_bytes(b"weights")
    tool = load_tool("export_model")
    assert tool.main(["--model", str(tmp_path / "does_not_matter"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"export_model.py: error: {out} already holds an export (export.json, model.pdiparams); pass "
                   "--overwrite to replace it")
    assert (out / "model.pdiparams").read_bytes() == b"weights"



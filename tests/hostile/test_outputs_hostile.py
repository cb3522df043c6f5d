"""Hostile output paths: one policy for every writer; nothing existing is overwritten by surprise."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, cli_env, pairs_of, run_cli, snapshot

EXTRACT = ("pairs", "extract", "--source", "vpc_flow", "--view", "instance_src_ip", "--start", "2022-04-12",
           "--end", "2022-04-13")


def _extract(lake: Path, out: Path | str, *extra: str, env=None):
    return run_cli(*EXTRACT, "--root", str(lake), "--out", str(out), *extra, env=env)


def _lake_object(lake: Path) -> Path:
    return next(lake.rglob("a.parquet"))


@pytest.mark.parametrize("where", ["object", "new_file_in_partition", "lake_root_itself"])
def test_out_inside_the_lake_root_is_refused_and_the_lake_unchanged(lake: Path, where: str) -> None:
    obj = _lake_object(lake)
    target = {"object": obj, "new_file_in_partition": obj.with_name("pairs.parquet"),
              "lake_root_itself": lake / "pairs.parquet"}[where]
    before = snapshot(obj)
    listing = sorted(p.relative_to(lake) for p in lake.rglob("*"))
    proc = _extract(lake, target)
    assert_one_line_error(proc, str(target), "inside the lake root")
    assert snapshot(obj) == before
    assert sorted(p.relative_to(lake) for p in lake.rglob("*")) == listing


def test_out_through_a_link_into_the_lake_is_refused(lake: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to(_lake_object(lake).parent, target_is_directory=True)
    before = snapshot(_lake_object(lake))
    assert_one_line_error(_extract(lake, link / "a.parquet", "--force"), "inside the lake root")
    assert snapshot(_lake_object(lake)) == before


def test_existing_file_needs_force(lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.parquet"
    out.write_bytes(b"precious")
    before = snapshot(out)
    assert_one_line_error(_extract(lake, out), str(out), "--force")
    assert snapshot(out) == before
    proc = _extract(lake, out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert len(pairs_of(out)) == 20
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink", "under_a_file", "empty"])
def test_non_regular_targets_are_refused_even_with_force(lake: Path, tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if kind == "folder":
        target, needle = tmp_path / "adir", "is a folder"
        target.mkdir()
    elif kind == "fifo":
        target, needle = tmp_path / "pipe", "not a regular file"
        os.mkfifo(target)
    elif kind == "symlink":
        target, needle = tmp_path / "link.parquet", "symbolic link"
        target.symlink_to(victim)
    elif kind == "under_a_file":
        target, needle = victim / "pairs.parquet", "which is a file"
    else:
        target, needle = "", "empty path"
    before = snapshot(victim)
    proc = _extract(lake, target, "--force")
    assert_one_line_error(proc, needle)
    assert snapshot(victim) == before
    if kind == "fifo":
        assert not Path(target).is_file()


def test_character_device_is_never_replaced(lake: Path) -> None:
    dev = Path("/dev/null")
    before = os.stat(dev)
    assert_one_line_error(_extract(lake, dev, "--force"), "/dev/null", "not a regular file")
    after = os.stat(dev)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_one_line_error(lake: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_one_line_error(_extract(lake, ro / "p.parquet"), "not writable")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("root_kind", ["missing", "file"])
def test_missing_or_wrong_root_is_an_error(tmp_path: Path, root_kind: str) -> None:
    root = tmp_path / "nolake"
    if root_kind == "file":
        root.write_text("not a lake")
    out = tmp_path / "p.parquet"
    proc = _extract(root, out)
    assert_one_line_error(proc, str(root), "does not exist" if root_kind == "missing" else "is not a folder")
    assert not out.exists()


@pytest.mark.parametrize("start,end,needle", [
    ("0001-01-01", "9999-12-31", "at most 3660 days"),
    ("2022-04-13", "2022-04-12", "empty data interval"),
    ("2022-04-12", "2022-04-12", "empty data interval"),
    ("2022-02-30", "2022-04-12", "invalid time"),
])
def test_absurd_intervals_fail_fast(lake: Path, tmp_path: Path, start: str, end: str, needle: str) -> None:
    t0 = time.perf_counter()
    proc = run_cli("pairs", "extract", "--root", str(lake), "--source", "vpc_flow", "--start", start, "--end", end,
                   "--out", str(tmp_path / "p.parquet"))
    assert_one_line_error(proc, needle)
    assert time.perf_counter() - t0 < 30  # interpreter start included; the check itself lists no day
    assert not (tmp_path / "p.parquet").exists()


def test_work_location_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.write_text("a file")
    env = cli_env(SECLAKE_ML_WORK_LOCATION=str(work))
    assert_one_line_error(run_cli("scoring", "show", env=env), str(work), "is a file")
    assert work.read_text() == "a file"


# ---------------------------------------------------------------------------------------- ipinsights
def _score(model: Path, pairs: Path, out: Path | str, *extra: str, env=None):
    return run_cli("ipinsights", "score", "--model", str(model), "--input", str(pairs), "--output", str(out),
                   *extra, env=env)


@pytest.mark.parametrize("kind,needle", [("exists", "--force"), ("folder", "is a folder"),
                                         ("under_a_file", "which is a file"), ("lake", "inside the lake root")])
def test_ipinsights_score_output_policy(lake: Path, tmp_path: Path, kind: str, needle: str) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("i-1,10.0.0.1\n")
    keep = tmp_path / "keep.csv"
    keep.write_text("entity,ip\n")
    out = {"exists": keep, "folder": tmp_path, "under_a_file": keep / "x.csv",
           "lake": _lake_object(lake).with_name("scores.parquet")}[kind]
    before = snapshot(keep)
    env = cli_env(SECLAKE_ML_LAKE_ROOT=str(lake))
    assert_one_line_error(_score(tmp_path / "no-model", pairs, out, env=env), needle)
    assert snapshot(keep) == before
    assert not _lake_object(lake).with_name("scores.parquet").exists()


def test_calibration_sets_refuse_existing_outputs(tmp_path: Path) -> None:
    normal, abnormal = tmp_path / "n.parquet", tmp_path / "a.parquet"
    normal.write_bytes(b"n")
    pairs = tmp_path / "p.csv"
    pairs.write_text("i-1,10.0.0.1\n")
    proc = run_cli("ipinsights", "calibration-sets", "--train", str(pairs), "--later", str(pairs),
                   "--normal-out", str(normal), "--abnormal-out", str(abnormal))
    assert_one_line_error(proc, "--normal-out", str(normal), "--force")
    assert normal.read_bytes() == b"n" and not abnormal.exists()


@pytest.mark.parametrize("damage,needle", [("bad_zip_member", "cannot be read"), ("not_an_array", "not NumPy arrays")])
def test_damaged_model_archive_is_a_one_line_error(trained_site: dict, tmp_path: Path, damage: str,
                                                   needle: str) -> None:
    import hashlib
    import io
    import shutil
    import zipfile

    model = tmp_path / "model"
    shutil.copytree(trained_site["model_tmp"], model)
    npz = model / "model.npz"
    data = npz.read_bytes()
    if damage == "bad_zip_member":
        # keep the zip directory, damage the compressed bytes of the first member
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = zf.infolist()[0]
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        data = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 64]) + data[start + 64:]
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
            for item in src.infolist():
                dst.writestr(item, src.read(item))
            dst.writestr("notes.txt", b"not an array")
        data = buf.getvalue()
    npz.write_bytes(data)
    desc = json.loads((model / "model.json").read_text())
    desc["npz_sha256"] = hashlib.sha256(data).hexdigest()  # a consistent tamper: the checksum matches
    (model / "model.json").write_text(json.dumps(desc))
    pairs = tmp_path / "p.csv"
    pairs.write_text("i-1,10.0.0.1\n")
    out = tmp_path / "scores.csv"
    assert_one_line_error(_score(model, pairs, out), "model.npz", needle)
    assert not out.exists()

"""`datasets check` on good and broken copies of the three datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.data.check import check_command
from tests.fixtures_datasets import write_cvact, write_cvusa, write_vigor


def run(capsys: pytest.CaptureFixture, dataset: str, root: Path, split: str | None = None):
    code = check_command(dataset, root, split)
    return code, capsys.readouterr().out


def test_good_copies_pass_with_counts_against_the_official_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_cvusa(tmp_path / "CVUSA", polar=(12, 48))
    code, out = run(capsys, "cvusa", tmp_path / "CVUSA")
    assert code == 0, out
    assert "train: 10 pairs listed (official 35,532" in out
    assert "test: 6 pairs listed (official 8,884" in out
    assert "ground: 6 present, 0 missing, 0 unreadable" in out
    assert "prepared polar maps vs on-the-fly transform on 4 tiles" in out and ": agree" in out
    assert out.rstrip().endswith(
        "OK: every image named by the split files is present and readable by a run (all "
        "checked by header and end marker, a sample of each side fully decoded)."
    )

    write_vigor(tmp_path / "VIGOR", per_city=2)
    code, out = run(capsys, "vigor", tmp_path / "VIGOR")
    assert code == 0, out
    assert "split same-area:" in out and "split cross-area:" in out
    assert "gallery differs from the official 90,618 tiles" in out


def test_missing_folder_shows_the_expected_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_cvusa(tmp_path, n_train=2, n_test=2)
    (tmp_path / "bingmap" / "19").rename(tmp_path / "bingmap" / "18")
    code, out = run(capsys, "cvusa", tmp_path)
    assert code == 2
    assert "cannot be used" in out and "missing:\n  - bingmap/19" in out
    assert "streetview/panos/0000001.jpg" in out
    code, out = run(capsys, "cvact", tmp_path / "typo")
    assert code == 2 and f"{tmp_path / 'typo'} does not exist." in out
    assert "ANU_data_small/" in out


def test_missing_and_truncated_images_are_listed_with_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fx = write_cvact(tmp_path)
    gone = tmp_path / "ANU_data_test" / "streetview" / f"{fx['ids'][fx['test'][0]]}_grdView.jpg"
    gone.unlink()
    broken = tmp_path / "ANU_data_small" / "satview_polish"
    broken = broken / f"{fx['ids'][fx['train'][1]]}_satView_polish.jpg"
    broken.write_bytes(broken.read_bytes()[:300])
    garbled = tmp_path / "ANU_data_test" / "streetview" / f"{fx['ids'][fx['test'][2]]}_grdView.jpg"
    data = bytearray(garbled.read_bytes())
    data[400:-2] = b"\xff" * (len(data) - 402)  # intact end marker: only a full decode sees it
    garbled.write_bytes(bytes(data))
    code, out = run(capsys, "cvact", tmp_path, "test")
    assert code == 1
    assert f"missing: {gone}" in out
    assert f"unreadable: {broken} (truncated JPEG (no end marker))" in out
    assert f"unreadable: {garbled} (does not decode" in out
    assert "usable: 17 of 18 pairs" in out and "--skip-bad-images" in out
    assert "PARTIAL: 1 missing and 2 unreadable images (distinct files)" in out


def test_corrupt_mat_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fx = write_cvact(tmp_path, n=6, n_train=3, n_val=2)
    fx["mat"].write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 40)
    code, out = run(capsys, "cvact", tmp_path, "val")
    assert code == 2
    assert f"{fx['mat']} could not be read as a MATLAB file" in out


def test_unknown_dataset_or_split_suggests_names(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out = run(capsys, "cvus", tmp_path)
    assert code == 2 and "'cvusa'" in out
    code, out = run(capsys, "vigor", tmp_path, "same_area")
    assert code == 2 and "'same-area'" in out

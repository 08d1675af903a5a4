"""`taxoclip predict / embed / taxa` as commands: outputs, resume after SIGKILL, flat memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taxoclip.cli import main

SRC = Path(__file__).resolve().parent.parent / "src"


def taxoclip(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "taxoclip", *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def photo_list(labels, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lists") / "photos.txt"
    path.write_text("\n".join(sorted(labels["path"])[:40]) + "\n")
    return path


def _data_rows(path: Path, fmt: str) -> int:
    if fmt == "csv":
        return max(0, path.read_bytes().count(b"\n") - 1) if path.exists() else 0
    parts = path.with_name(path.name + ".parts")
    return len(list(parts.glob("part-*.parquet"))) if parts.exists() else 0


def _read(path: Path, fmt: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"k": "Int64"}) if fmt == "csv" else pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_resume_after_kill_gives_the_rows_of_an_uninterrupted_run(standin_dir, photo_list, tmp_path, fmt, capsys):
    options = ["--model", str(standin_dir), "--rank", "genus", "--k", "2", "--batch-size", "2", "--workers", "0"]
    output = tmp_path / f"out.{fmt}"
    run = taxoclip("predict", str(photo_list), *options, "-o", str(output))
    enough = 12 if fmt == "csv" else 4  # rows (csv) or part files (parquet) before the kill
    deadline = time.time() + 120
    while _data_rows(output, fmt) < enough and run.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    if fmt == "parquet":
        assert not output.exists() and _data_rows(output, fmt) >= enough  # parts kept, not merged
    assert main(["predict", str(photo_list), *options, "-o", str(output), "--resume"]) == 0
    assert "already done" in capsys.readouterr().err
    reference = tmp_path / f"reference.{fmt}"
    assert main(["predict", str(photo_list), *options, "-o", str(reference), "-q"]) == 0
    got, expected = _read(output, fmt), _read(reference, fmt)
    assert len(expected) == 80 and expected["path"].nunique() == 40
    pd.testing.assert_frame_equal(got.drop(columns="score"), expected.drop(columns="score"))
    np.testing.assert_allclose(got["score"], expected["score"], atol=1e-6)


def test_memory_stays_flat_with_ten_times_more_images(tmp_path, labels):
    """Peak RSS for 200 vs 20 images (100,000-taxa bank: a kept probability vector would be 400 kB each)."""
    from taxoclip.models.standin import make_standin

    model = make_standin(tmp_path / "big-bank", random_bank_size=100_000)
    photos = sorted(labels["path"])[:20]
    links = tmp_path / "links"
    links.mkdir()
    for i in range(200):
        (links / f"{i:04d}.jpg").symlink_to(photos[i % 20])
    few = tmp_path / "few.txt"
    few.write_text("\n".join(str(links / f"{i:04d}.jpg") for i in range(20)))
    probe = ("import resource, sys; from taxoclip.cli import main; rc = main(sys.argv[1:]); "
             "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    peaks = {}
    for name, inputs in (("few", str(few)), ("many", str(links))):
        out = tmp_path / f"{name}.csv"
        args = ["predict", inputs, "--model", str(model), "--wide", "--abstain", "0.5", "--workers", "0",
                "--batch-size", "16", "-o", str(out), "-q"]
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PYTHONPATH": str(SRC)})
        assert result.returncode == 0, result.stderr
        peaks[name] = int(result.stdout.split("MAXRSS")[1]) / 1024  # MiB
        assert len(pd.read_csv(out)) == (20 if name == "few" else 200)
    assert peaks["many"] - peaks["few"] < 40, peaks


def test_outputs_formats_and_existing_file_protection(standin_dir, photo_list, tmp_path, capsys):
    common = ["--model", str(standin_dir), "--workers", "0", "-q", "--k", "3"]
    photos = photo_list.read_text().split()[:4]
    jsonl = tmp_path / "out.jsonl"
    assert main(["predict", *photos, "/no/such/photo.jpg", *common, "-o", str(jsonl)]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 4 * 3 + 1 and rows[-1]["error"] == "no such file or directory"
    assert {r["model"] for r in rows} == {rows[0]["model"]} and "#sha256:" in rows[0]["model"]
    # A torn last line and a half-written image are redone on resume, not duplicated.
    lines = jsonl.read_text().splitlines(keepends=True)
    jsonl.write_text("".join(lines[:11]) + lines[11][:10])  # image 4: two rows whole, the third torn
    assert main(["predict", *photos, "/no/such/photo.jpg", *common, "-o", str(jsonl), "--resume"]) == 0
    again = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["path"], r["k"]) for r in again] == [(r["path"], r["k"]) for r in rows]
    capsys.readouterr()
    assert main(["predict", *photos, *common, "-o", str(jsonl)]) == 2
    assert "exists: pass --resume to continue it, or --overwrite" in capsys.readouterr().err
    assert main(["predict", *photos, *common, "--wide", "-o", str(jsonl), "--resume"]) == 2
    assert "other columns" in capsys.readouterr().err
    assert jsonl.read_text().splitlines() == [json.dumps(r, ensure_ascii=False) for r in again]  # untouched
    wide = tmp_path / "wide.csv"
    assert main(["predict", *photos, *common, "--wide", "--rank", "family", "-o", str(wide)]) == 0
    table = pd.read_csv(wide)
    assert list(table.columns[:3]) == ["path", "kingdom", "kingdom_score"] and "genus" not in table
    capsys.readouterr()
    labels = "bird,flowering plant,mushroom,fish"  # encoded (and cached) by test_predict.py already
    assert main(["predict", *photos[:2], *common, "--format", "table", "--labels", labels]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("# model: ") and "label" in shown[1] and len(shown) == 2 + 2 * 3


def test_embed_and_taxa_commands(standin_dir, photo_list, tmp_path, capsys):
    photos = photo_list.read_text().split()[:3]
    out = tmp_path / "emb.parquet"
    assert main(["embed", *photos, "--model", str(standin_dir), "--workers", "0", "-q", "-o", str(out)]) == 0
    table = pd.read_parquet(out)
    assert table["path"].tolist() == photos and table["error"].isna().all()
    vectors = np.stack(table["embedding"])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    capsys.readouterr()
    assert main(["taxa", "--model", str(standin_dir), "--taxa", "family=Paridae"]) == 0
    listed = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(listed.columns) == ["kingdom", "phylum", "class", "order", "family", "genus", "species_epithet",
                                    "species", "common_name"]
    assert len(listed) == 5 and set(listed["family"]) == {"Paridae"} and "Periparus ater" in set(listed["species"])


def test_user_errors_are_one_line(standin_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["predict", str(tmp_path), "--model", str(standin_dir), "--taxa", "family=Nonexistentidae"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "taxoclip: error: --taxa family=Nonexistentidae: not in this bank: Nonexistentidae (names are matched "
        "case-insensitively; `taxoclip taxa` lists the bank)"]
    empty_list = tmp_path / "none.txt"
    empty_list.write_text("# nothing yet\n")
    assert main(["predict", str(empty_list), "--model", str(standin_dir), "-q"]) == 2
    assert capsys.readouterr().err.strip() == "taxoclip: error: no images found in the given paths"

"""CTR rankers through the CLI: train, predict, evaluate on the saved split, overlap refusal, bad options."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turborec.cli.main import main
from turborec.data.ctr import read_criteo, shuffle_split
from turborec.metrics.ctr import auc
from turborec.train.ctr import load_ranker


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, never a traceback
    return err[0]


@pytest.fixture(scope="module")
def criteo_run(tmp_path_factory: pytest.TempPathFactory, criteo_10k: Path) -> Path:
    out = tmp_path_factory.mktemp("ctr") / "lr"
    code = main(["train", "--task", "ctr", "--format", "criteo", "--data", str(criteo_10k), "--model", "logreg",
                 "--seed", "3", "--epochs", "2", "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_evaluate_with_data_rescores_the_saved_split(
    criteo_run: Path, criteo_10k: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = json.loads((criteo_run / "manifest.json").read_text())
    assert saved["config"]["split"]["seed"] == 3
    capsys.readouterr()
    # --seed is the retrieval protocol's; a ranker always uses the seed it was trained with
    assert main(["evaluate", str(criteo_run), "--data", str(criteo_10k), "--format", "criteo", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "seed 3" in out and "| 1000 |" in out
    assert f"{saved['metrics']['auc']:.4f}" in out  # the same test rows the training run scored
    test = shuffle_split(read_criteo(criteo_10k), seed=3)[2]
    assert test.label is not None
    assert auc(test.label, load_ranker(criteo_run).predict(test)) == pytest.approx(saved["metrics"]["auc"], abs=1e-6)


def test_evaluation_on_training_rows_is_refused(
    criteo_run: Path, criteo_10k: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["evaluate", str(criteo_run), "--data", str(criteo_10k), "--format", "criteo", "--split", "none"]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "8,000 of 10,000 evaluated rows" in line and "--allow-overlap" in line
    assert main([*args, "--allow-overlap"]) == 0
    assert "warning: 8,000 of 10,000" in capsys.readouterr().err


def test_evaluate_test_file_counts_rows_shared_with_training(
    criteo_run: Path, criteo_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the 200-row CSV sample shares 19 rows with the 10k file: those in the training part must be caught
    ranker = load_ranker(criteo_run)
    from turborec.data.ctr import row_fingerprints

    other = read_criteo(criteo_csv)
    shared = ranker.overlap(row_fingerprints(other))
    assert 0 < shared <= 19
    capsys.readouterr()
    assert main(["evaluate", str(criteo_run), "--test", str(criteo_csv), "--format", "criteo"]) == 2
    assert f"{shared} of 200 evaluated rows" in _one_error_line(capsys)
    assert main(["evaluate", str(criteo_run), "--test", str(criteo_csv), "--format", "criteo", "--allow-overlap"]) == 0
    assert "|  200 |" in capsys.readouterr().out


def test_predict_streams_a_file_into_parquet_and_csv(
    criteo_run: Path, criteo_unlabelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ranker = load_ranker(criteo_run)
    rows = read_criteo(criteo_unlabelled, nrows=3000)
    src = tmp_path / "rows.txt"
    with gzip.open(criteo_unlabelled, "rt") as f:
        src.write_text("".join(next(f) for _ in range(3000)))
    want = ranker.predict(rows)
    for suffix in (".parquet", ".csv"):
        out = tmp_path / f"scores{suffix}"
        args = ["predict", str(criteo_run), "--data", str(src), "--format", "criteo", "--out", str(out),
                "--chunk-rows", "700"]  # fmt: skip
        assert main(args) == 0
        got = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
        assert list(got.columns) == ["probability"] and len(got) == 3000
        np.testing.assert_allclose(got["probability"].to_numpy(), want, rtol=1e-5, atol=1e-6)
    err = capsys.readouterr().err
    assert "scored 700 rows" in err and "\r" not in err  # not a terminal: plain lines, no progress bar
    # a table with the model's feature columns scores the same
    table = pd.DataFrame(rows.dense, columns=list(rows.dense_names))
    for j, name in enumerate(rows.sparse_names):
        table[name] = rows.categorical[:, j]
    table.to_parquet(tmp_path / "rows.parquet")
    out = tmp_path / "from_table.csv"
    assert main(["predict", str(criteo_run), "--data", str(tmp_path / "rows.parquet"), "--format", "parquet",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    np.testing.assert_allclose(pd.read_csv(out)["probability"].to_numpy(), want, rtol=1e-5, atol=1e-6)


def test_predict_refusals_are_one_line(criteo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("I1,C1\n1,a\n")
    capsys.readouterr()
    assert main(["predict", str(criteo_run), "--data", str(table), "--format", "csv", "--out",
                 str(tmp_path / "s.parquet")]) == 2  # fmt: skip
    assert "are missing" in _one_error_line(capsys)
    assert not (tmp_path / "s.parquet").exists()
    assert main(["predict", str(criteo_run), "--data", str(table), "--format", "csv", "--out",
                 str(tmp_path / "s.json")]) == 2  # fmt: skip
    assert ".parquet or .csv" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--task", "ctr", "--format", "criteo", "--param", "embedding_dim=abc"], "embedding_dim='abc': expected an integer"),
        (["--task", "ctr", "--format", "criteo", "--param", "embedding_dim=-5"], "embedding_dim must be >= 1, got -5"),
        (["--task", "ctr", "--format", "criteo", "--param", "min_freq=0"], "min_freq must be >= 1, got 0"),
        (["--task", "ctr", "--format", "criteo", "--param", "wide=perhaps"], "wide='perhaps': expected true/false"),
        (["--task", "ctr", "--format", "criteo", "--param", "deep=64,x"], "deep='64,x': expected comma-separated"),
        (["--task", "ctr", "--format", "criteo", "--param", "colour=red"], "unknown option 'colour'"),
        (["--model", "two-tower", "--param", "dim=-5"], "dim=-5: must be >= 1"),
        (["--model", "two-tower", "--param", "dim=abc"], "dim='abc': expected an integer"),
        (["--model", "two-tower", "--param", "dropout=1.5"], "dropout=1.5: must be >= 0 and < 1"),
    ],
)
def test_bad_option_values_are_one_line(
    argv: list[str], expected: str, tmp_path: Path, criteo_10k: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(criteo_10k)] if "ctr" in argv else []
    assert main(["train", *argv, *data, "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_bad_serve_setting_from_the_environment_is_one_line(
    criteo_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TURBOREC_SERVE_MAX_BATCH", "lots")
    capsys.readouterr()
    assert main(["serve", str(criteo_run)]) == 2
    assert "max_batch='lots': expected an integer" in _one_error_line(capsys)

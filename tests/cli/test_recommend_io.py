"""recommend/evaluate with users' files: tables by extension, --users from an interactions file,
--exclude, the --unknown rule and its report, evaluate's skipped users."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from turborec.cli.main import main
from turborec.data import apply_protocol, synthetic


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("recio")
    split = apply_protocol("recbole", synthetic(n_users=300, n_items=200, n_interactions=9000, seed=3), seed=1)
    split.train.to_pandas().to_parquet(root / "train.parquet")
    split.valid.to_pandas().to_csv(root / "valid.csv", index=False)
    split.test.to_pandas().to_json(root / "test.jsonl", orient="records", lines=True)
    assert main(["train", "--data", str(root / "train.parquet"), "--split", "none", "--model", "ease",
                 "--out", str(root / "model"), "--quiet"]) == 0
    return root


def test_users_from_an_interactions_file_one_list_per_user(work: Path) -> None:
    out = work / "recs.parquet"
    assert main(["recommend", str(work / "model"), "--users", str(work / "test.jsonl"), "-k", "3",
                 "--out", str(out)]) == 0
    recs = pd.read_parquet(out)  # really Parquet
    test_users = pd.read_json(work / "test.jsonl", lines=True)["user_id"]
    assert list(pd.unique(recs["user"])) == list(pd.unique(test_users))  # unique, first-seen order
    assert len(recs) == 3 * test_users.nunique() and recs.groupby("user")["rank"].apply(list).map(
        lambda r: r == [1, 2, 3]).all()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_out_format_follows_the_extension(work: Path, suffix: str) -> None:
    out = work / f"recs{suffix}"
    assert main(["recommend", str(work / "model"), "--users", str(work / "valid.csv"), "-k", "2",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_json(out, lines=True)
    assert list(frame.columns) == ["user", "rank", "item", "score"] and len(frame) > 0


def test_out_with_an_unknown_extension_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(work / "model"), "--users", str(work / "valid.csv"),
                 "--out", str(work / "recs.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recs.txt" in err[0] and "*.parquet" in err[0]
    assert not (work / "recs.txt").exists()


def test_exclude_leaves_out_the_validation_items(work: Path) -> None:
    plain, masked = work / "plain.parquet", work / "masked.parquet"
    base = ["recommend", str(work / "model"), "--users", str(work / "valid.csv"), "-k", "20"]
    assert main([*base, "--out", str(plain)]) == 0
    assert main([*base, "--out", str(masked), "--exclude", str(work / "valid.csv")]) == 0
    valid = pd.read_csv(work / "valid.csv")
    pairs = set(zip(valid["user_id"], valid["item_id"]))
    hits = lambda f: sum((u, i) in pairs for u, i in zip(f["user"], f["item"]))  # noqa: E731
    assert hits(pd.read_parquet(plain)) > 0 and hits(pd.read_parquet(masked)) == 0


def test_unknown_users_are_counted_and_named(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = work / "ids.txt"
    ids.write_text("1\n777777\n1\nnobody\n")
    assert main(["recommend", str(work / "model"), "--users", str(ids), "-k", "2"]) == 0
    cap = capsys.readouterr()
    assert "2 unknown user id(s): 777777, nobody: served the most popular items" in cap.err
    rows = [line.split(",")[0] for line in cap.out.strip().splitlines()[1:]]
    assert rows == ["1", "1", "777777", "777777", "nobody", "nobody"]  # duplicates dropped, order kept
    assert main(["recommend", str(work / "model"), "--users", str(ids), "-k", "2", "--unknown", "skip"]) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.strip().splitlines()[1:]] == ["1", "1"]
    assert main(["recommend", str(work / "model"), "--users", str(ids), "--unknown", "error"]) == 2
    assert "777777" in capsys.readouterr().err


def test_evaluate_says_which_users_it_skipped_and_why(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = pd.read_json(work / "test.jsonl", lines=True)[["user_id", "item_id"]]
    extra = pd.DataFrame({"user_id": [900001, 900002], "item_id": [test["item_id"].iloc[0]] * 2})
    pd.concat([test, extra]).to_csv(work / "test_plus.csv", index=False)
    assert main(["evaluate", str(work / "model"), "--train", str(work / "train.parquet"),
                 "--test", str(work / "test_plus.csv")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"{test['user_id'].nunique()} users evaluated" in first
    assert "2 test user(s) skipped: 2 unknown user id(s): 900001, 900002 (not in the model's training data)" in first

"""``turborec recommend -k`` larger than what remains never prints an excluded item, and says so (issue 15.7)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from turborec.cli.main import main
from turborec.data.synthetic import synthetic
from turborec.train import TwoTowerRecommender, load


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic(n_users=60, n_items=120, n_interactions=1500, seed=5)
    rec = TwoTowerRecommender(dim=8, hidden=(16,), history_len=10, epochs=1, batch_size=512, seed=0, progress=False)
    return rec.fit(data).save(tmp_path_factory.mktemp("rec") / "tt")


def seen_items(path: Path, user: str) -> set[str]:
    rec = load(path)
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    return {str(i) for i in rec.items.decode(rec.histories.of(rec.users.index(user)))}


def test_k_beyond_the_catalog_prints_no_excluded_item(small_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = "1"
    seen = seen_items(small_model, user)
    assert seen
    assert main(["recommend", str(small_model), "--user", user, "-k", "5000"]) == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.strip().splitlines()]
    items = [r[1] for r in rows]
    assert not set(items) & seen
    assert "-inf" not in out and len(items) == len(set(items)) == 120 - len(seen)
    assert f"only {len(items)} of the 5000 items" in err


def test_k_that_fits_prints_k_and_no_note(small_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(small_model), "--user", "1", "-k", "7"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 7 and "only" not in err


def test_a_file_of_users_gets_no_excluded_rows(small_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.txt"
    users.write_text("1\n2\n3\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(small_model), "--users", str(users), "-k", "500", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    for user in ("1", "2", "3"):
        mine = [r for r in rows if r["user"] == user]
        assert mine and not {r["item"] for r in mine} & seen_items(small_model, user)
        assert all(r["score"] not in ("-inf", "nan") for r in mine)
    assert "3 user(s) have fewer than 500 items" in capsys.readouterr().err

"""``turborec export DIR --edge --out BUNDLE`` (cli/cmd_export.py), driven through its own parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from turborec.cli import cmd_export
from turborec.edge import EdgeReranker, load_bundle
from turborec.errors import ConfigError, UnknownIdError
from turborec.train import TwoTowerRecommender


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cmd_export.add_arguments(parser)
    return cmd_export.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def model_dir(two_tower: TwoTowerRecommender, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_tower.save(tmp_path_factory.mktemp("cli") / "tt")


def test_export_for_a_user_and_an_anonymous_session(model_dir: Path, two_tower: TwoTowerRecommender, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert two_tower.users is not None and two_tower.histories is not None and two_tower.items is not None
    user = two_tower.users.ids[3]
    assert _run(str(model_dir), "--edge", "--out", str(tmp_path / "u"), "--user", str(user), "--candidates", "120") == 0
    assert "120 candidates for user" in capsys.readouterr().out
    bundle = load_bundle(tmp_path / "u")
    assert bundle.n_candidates == 120 and str(bundle.user_id) == str(user)
    seen = {str(two_tower.items.ids[i]) for i in two_tower.histories.of(3)}
    assert not seen & {str(i) for i in bundle.item_ids}  # the server sends only items the user has not seen
    assert [str(i) for i in bundle.history_ids] == [str(two_tower.items.ids[i]) for i in two_tower.histories.of(3)[-20:]]

    history = ",".join(str(i) for i in two_tower.items.ids[:4])
    assert _run(str(model_dir), "--edge", "--out", str(tmp_path / "a"), "--history", history, "--fp32") == 0
    anon = load_bundle(tmp_path / "a")
    assert anon.user_id is None and anon.n_candidates == 500 and anon.config["weights"] == "fp32"
    assert not anon.tensors["user_part"].any()
    assert len(EdgeReranker(anon).rerank([anon.item_ids[0]], k=10)[0]) == 10


def test_export_with_a_trained_reranker(model_dir: Path, ml_small_dir: Path, tmp_path: Path) -> None:
    code = _run(str(model_dir), "--edge", "--out", str(tmp_path / "m"), "--reranker", "mlp", "--data", str(ml_small_dir),
                "--session-events", "3", "--reranker-epochs", "1", "--candidates", "100")  # fmt: skip
    assert code == 0 and load_bundle(tmp_path / "m").config["reranker"] == "mlp"


def test_export_errors(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--edge"):
        _run(str(model_dir), "--out", str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="give --data"):
        _run(str(model_dir), "--edge", "--out", str(tmp_path / "x"), "--reranker", "mlp")
    with pytest.raises(UnknownIdError):
        _run(str(model_dir), "--edge", "--out", str(tmp_path / "x"), "--user", "no-such-user")
    with pytest.raises(ConfigError, match="over the budget"):
        _run(str(model_dir), "--edge", "--out", str(tmp_path / "x"), "--max-bytes", "10000")
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_model_without_a_user_tower(ml_small_dir: Path, tmp_path: Path) -> None:
    from turborec.data import load_movielens
    from turborec.train import PopularityRecommender

    pop = PopularityRecommender().fit(load_movielens(ml_small_dir))
    pop.save(tmp_path / "pop")
    with pytest.raises(ConfigError, match="edge export needs a two-tower model"):
        _run(str(tmp_path / "pop"), "--edge", "--out", str(tmp_path / "x"))

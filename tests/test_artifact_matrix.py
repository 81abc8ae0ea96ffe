"""Every artifact kind the package writes x every consumer: it works with the right answers, or it is
refused in one line naming the kinds the consumer takes (exit 2).

Kinds (``KINDS``): plain two-tower, BPR, EASE, popularity, Mult-DAE + two-tower, compressed (int8 tables + int8 MLP, pruned,
distilled), a ``turborec tune --out`` folder (the model under ``model/`` with an ONNX user tower and an
exact ``Index``), a two-stage pipeline, a CTR ranker. Consumers (``CONSUMERS``): ``turborec.load`` and its
verbs, and the CLI's evaluate, recommend, serve (one request over loopback: /v1/recommend, or /v1/score for
a ranker), export --edge and predict. Artifacts are built once per module on tiny synthetic data. The
expected outcome of each cell is ``EXPECTED_REFUSALS`` (default: works).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import turborec
from turborec.cli.main import build_parser, main
from turborec.compress import compress_estimator, distill_retrieval, student_estimator
from turborec.compress import load as compress_load
from turborec.data.ctr import CTREncoder, RawCTR, SyntheticCTRConfig, synthetic_ctr
from turborec.data.interactions import Interactions
from turborec.data.splits import Split, random_split
from turborec.data.synthetic import synthetic
from turborec.metrics.ctr import auc
from turborec.models.mult_dae import DAETwoTowerConfig, MultDAEConfig
from turborec.models.rankers import build_ranker
from turborec.models.two_tower import TwoTowerConfig
from turborec.serving.knobs import ServingKnobs
from turborec.serving.server import background_server, build_service
from turborec.train import (
    BPRRecommender,
    CTRTrainConfig,
    EASERecommender,
    LoadedRanker,
    PopularityRecommender,
    Recommender,
    TwoStagePipeline,
    TwoTowerRecommender,
    fit_ranker,
    predict_ranker,
    save_ranker,
)
from turborec.train.dae import DAETwoTowerRecommender
from turborec.tune.artifact import save_tuned

RETRIEVAL_KINDS = ["two-tower", "bpr", "ease", "popularity", "dae-two-tower", "int8", "pruned", "distilled", "tuned", "pipeline"]
KINDS = [*RETRIEVAL_KINDS, "ranker"]
CONSUMERS = ["python", "evaluate", "recommend", "serve", "export", "predict"]
NOT_TWO_TOWER = ("bpr", "ease", "popularity", "dae-two-tower")
# (kind, consumer) -> the words of the one-line refusal; every other cell must work
EXPECTED_REFUSALS: dict[tuple[str, str], str] = {
    **{(k, "export"): "edge export needs a two-tower model" for k in NOT_TWO_TOWER},
    ("ranker", "recommend"): "recommend takes retrieval models (plain, compressed or tuned) and two-stage pipelines; "
                             "this artifact is a CTR ranker (kind 'ranker')",
    ("ranker", "export"): "export --edge takes retrieval models (plain, compressed or tuned) and two-stage "
                          "pipelines; this artifact is a CTR ranker (kind 'ranker')",
    **{(k, "predict"): "predict takes CTR rankers; this artifact is a " for k in RETRIEVAL_KINDS},
}
NOT_HERE: set[tuple[str, str]] = set()


@dataclass
class Built:
    path: Path  # what the user hands a command (a tune folder for "tuned")
    model: Any  # the in-memory object that was saved: the reference answers


@dataclass
class World:
    split: Split
    files: dict[str, Path]  # "train" / "test" CSVs for evaluate --train/--test
    built: dict[str, Built]
    ctr_rows: Any  # encoded rows
    ctr_raw: Any  # the same rows raw, also written to files["ctr"] (csv)


def _csv(data: Interactions, path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item"])
        w.writerows(zip(data.users.decode(data.user), data.items.decode(data.item)))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("matrix")
    split = random_split(synthetic(n_users=120, n_items=150, n_interactions=2400, seed=0), seed=0)
    quiet: dict[str, Any] = {"progress": False, "seed": 0}
    tt = TwoTowerRecommender(dim=16, hidden=(32,), history_len=10, epochs=2, batch_size=256, **quiet)
    tt.fit(split.train, split.valid)
    models: dict[str, Recommender | TwoStagePipeline] = {
        "two-tower": tt,
        "bpr": BPRRecommender(dim=16, epochs=2, **quiet).fit(split.train),
        "ease": EASERecommender().fit(split.train),
        "popularity": PopularityRecommender().fit(split.train),
        "dae-two-tower": DAETwoTowerRecommender(
            DAETwoTowerConfig(dae=MultDAEConfig(hidden=16), tower=TwoTowerConfig(dim=16, hidden=(32,))), epochs=2, **quiet
        ).fit(split.train, split.valid),
        "int8": compress_estimator(tt, quantize="int8", quantize_mlp=True),
        "pruned": compress_estimator(tt, prune=0.5),
    }
    student = student_estimator(tt, dim=8)
    models["distilled"] = distill_retrieval(tt, student, split.train, split.valid)
    pipe = TwoStagePipeline(tt, n_candidates=30, ranker_epochs=1, cooc_neighbors=10, seed=0)
    models["pipeline"] = pipe.fit(split.train, split.valid)
    built = {name: Built(m.save(root / name), m) for name, m in models.items()}
    # a tune folder as `turborec tune --out` writes it: the report beside model/ (an ONNX user tower and
    # an exact Index over the item vectors, the path `turborec serve` takes for any tuned index)
    tuned = models["int8"]
    folder = root / "tune"
    knobs = ServingKnobs(backend="onnx-fp32", index="Exact|query_batch=64")
    from turborec.retrieval import make_index

    index = make_index(knobs.index, dim=tuned.item_vectors().shape[1], metric="ip")
    index.add(tuned.item_vectors())
    save_tuned(folder / "model", tuned, knobs, index=index)
    (folder / "tune.md").write_text("# report\n")
    built["tuned"] = Built(folder, tuned)
    gen = synthetic_ctr(SyntheticCTRConfig(n_rows=1500, vocab_sizes=(10, 20, 30), n_dense=2, seed=0)).data
    raw = RawCTR(gen.dense.astype(np.float64), gen.sparse.astype(str).astype(object), gen.label, ("d0", "d1"),
                 ("c0", "c1", "c2"))  # fmt: skip
    encoder = CTREncoder(dense_transform="identity").fit(raw)
    ctr = encoder.transform(raw)
    ranker = build_ranker("dcnv2", cardinalities=ctr.cardinalities, n_dense=ctr.n_dense)
    fit_ranker(ranker, ctr, None, CTRTrainConfig(epochs=1, progress=False))
    built["ranker"] = Built(save_ranker(root / "ranker", ranker, encoder=encoder), ranker)
    files = {"train": _csv(split.valid, root / "train.csv"), "test": _csv(split.test, root / "test.csv"),
             "ctr": root / "ctr.csv"}  # fmt: skip
    table = pd.DataFrame({"label": gen.label, "d0": gen.dense[:, 0], "d1": gen.dense[:, 1]})
    for j in range(3):
        table[f"c{j}"] = raw.categorical[:, j]
    table.to_csv(files["ctr"], index=False)
    return World(split, files, built, ctr, raw)


def _refused(capsys: pytest.CaptureFixture[str], code: int, needle: str) -> None:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert needle in lines[0] and "Traceback" not in err


def _users(world: World) -> list[str]:
    return [str(u) for u in world.split.train.users.ids[:6]]


def _python(world: World, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = world.built[kind]
    loaded = turborec.load(b.path)
    if kind == "ranker":
        assert isinstance(loaded, LoadedRanker)
        np.testing.assert_array_equal(loaded.predict(world.ctr_rows), predict_ranker(b.model, world.ctr_rows))
        return
    assert type(loaded) is type(b.model)
    users = _users(world)
    want_ids, want_scores = b.model.recommend(users, N=10)
    got_ids, got_scores = loaded.recommend(users, N=10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)


def _ndcg_printed(out: str) -> float:
    return float(next(ln for ln in out.splitlines() if "ndcg@10" in ln).split("|")[2])


def _evaluate(world: World, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = world.built[kind]
    if kind == "ranker":  # all rows of a labelled file: AUC of the model's own predictions
        code = main(["evaluate", str(b.path), "--test", str(world.files["ctr"]), "--format", "csv"])
        out = capsys.readouterr().out
        assert code == 0, out
        row = next(ln for ln in out.splitlines() if ln.startswith("|") and "auc" not in ln and "---" not in ln)
        want = auc(world.ctr_rows.label, predict_ranker(b.model, world.ctr_rows))
        assert float(row.split("|")[2]) == pytest.approx(want, abs=1e-4)
        return
    args = ["evaluate", str(b.path), "--train", str(world.files["train"]), "--test", str(world.files["test"]),
            "--format", "csv", "--columns", "user,item", "-k", "10"]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    report = b.model.evaluate(world.split.test, exclude=[world.split.valid], ks=(10,))
    want = report["ndcg@10"] if isinstance(report, dict) else report.metrics["ndcg@10"]
    assert _ndcg_printed(out) == pytest.approx(want, abs=1e-4)


def _recommend(world: World, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = world.built[kind]
    user = _users(world)[0]
    code = main(["recommend", str(b.path), "--user", user, "-k", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    got = [ln.split()[1] for ln in out.strip().splitlines()]
    want_ids, _ = b.model.recommend(user, N=5)
    assert got == [str(i) for i in want_ids]


def _serve(world: World, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`turborec serve PATH`'s settings and service, one request over loopback, the model's own answer."""
    from turborec.cli.cmd_serve import settings_from_args

    b = world.built[kind]
    args: argparse.Namespace = build_parser().parse_args(["serve", str(b.path), "--no-adaptive-tiers"])
    settings = settings_from_args(args).with_(slo_p99_ms=5000.0)
    if kind == "ranker":  # POST /v1/score: rows of raw feature values -> the model's probabilities
        raw = world.ctr_raw
        rows = [{"d0": float(raw.dense[r, 0]), "d1": float(raw.dense[r, 1]),
                 **{f"c{j}": raw.categorical[r, j] for j in range(3)}} for r in range(20)]  # fmt: skip
        want = predict_ranker(b.model, world.ctr_rows)[:20]
        with background_server(build_service(settings)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            body = client.post("/v1/score", json={"rows": rows}).json()
        assert body["tier"] == "full", body
        np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-6)
        return
    users = _users(world)[:3]
    want_ids, want_scores = b.model.recommend(users, N=30)  # beyond k: ties at the cut may go either way
    service = build_service(settings)
    with background_server(service) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        for row, user in enumerate(users):
            body = client.post("/v1/recommend", json={"user": user, "k": 10}).json()
            assert body["tier"] == "full" and body["user_known"], body
            got = [it["item"] for it in body["items"]]
            scores = np.array([it["score"] for it in body["items"]])
            np.testing.assert_allclose(scores, want_scores[row][:10], rtol=1e-3, atol=1e-3)
            want = [str(i) for i in want_ids[row]]
            for pos, item in enumerate(got):  # item for item, except inside runs of tied scores
                tied = np.flatnonzero(np.abs(want_scores[row] - want_scores[row][pos]) <= 1e-3)
                assert item in {want[j] for j in tied}, (pos, got, want)


def _predict(world: World, kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    b = world.built[kind]
    out = tmp_path / "scores.parquet"
    code = main(["predict", str(b.path), "--data", str(world.files["ctr"]), "--format", "csv", "--out", str(out),
                 "--chunk-rows", "500"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    np.testing.assert_allclose(pd.read_parquet(out)["probability"].to_numpy(),
                               predict_ranker(b.model, world.ctr_rows), rtol=1e-5, atol=1e-6)  # fmt: skip


def _export(world: World, kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from turborec.edge.bundle import load_bundle

    b = world.built[kind]
    user = _users(world)[0]
    out = tmp_path / "bundle"
    code = main(["export", str(b.path), "--edge", "--out", str(out), "--user", user, "--candidates", "40"])
    printed = capsys.readouterr()
    assert code == 0, printed
    bundle = load_bundle(out)
    assert str(bundle.user_id) == user and bundle.n_candidates == 40


CELLS = [(k, c) for k in KINDS for c in CONSUMERS if (k, c) not in NOT_HERE]


@pytest.mark.parametrize(("kind", "consumer"), CELLS)
def test_cell(world: World, kind: str, consumer: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    refusal = EXPECTED_REFUSALS.get((kind, consumer))
    if refusal is not None:
        path = str(world.built[kind].path)
        argv = {
            "evaluate": ["evaluate", path, "--train", str(world.files["train"]), "--test", str(world.files["test"]),
                         "--format", "csv", "--columns", "user,item"],
            "recommend": ["recommend", path, "--user", _users(world)[0]],
            "serve": ["serve", path, "--port", "1"],  # refused before anything binds
            "export": ["export", path, "--edge", "--out", str(tmp_path / "bundle"), "--user", _users(world)[0]],
            "predict": ["predict", path, "--data", str(world.files["ctr"]), "--format", "csv", "--out",
                        str(tmp_path / "bundle")],
        }[consumer]
        capsys.readouterr()
        _refused(capsys, main(argv), refusal)
        assert not (tmp_path / "bundle").exists()
        return
    capsys.readouterr()
    if consumer in ("export", "predict"):
        (_export if consumer == "export" else _predict)(world, kind, capsys, tmp_path)
    else:
        {"python": _python, "evaluate": _evaluate, "recommend": _recommend, "serve": _serve}[consumer](
            world, kind, capsys)


@pytest.mark.parametrize("kind", ["int8", "pruned", "distilled", "tuned"])
def test_compressed_models_score_as_compress_load_does(world: World, kind: str) -> None:
    """``turborec.load`` gives a compressed model the NDCG that ``turborec.compress.load`` gives it, which is
    the NDCG of the compressed model that was saved."""
    path = world.built[kind].path
    split = world.split
    via_load = turborec.load(path)
    via_compress = compress_load(path / "model" if kind == "tuned" else path)
    assert isinstance(via_load, Recommender) and isinstance(via_compress, Recommender)
    assert via_load.transforms == via_compress.transforms and (kind == "distilled" or via_load.transforms)
    a = via_load.evaluate(split.test, exclude=[split.valid], ks=(10,)).metrics["ndcg@10"]
    b = via_compress.evaluate(split.test, exclude=[split.valid], ks=(10,)).metrics["ndcg@10"]
    saved = world.built[kind].model.evaluate(split.test, exclude=[split.valid], ks=(10,)).metrics["ndcg@10"]
    assert a == b == saved and a > 0


def test_a_folder_that_is_no_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for argv in (["recommend", str(tmp_path / "empty"), "--user", "1"], ["serve", str(tmp_path / "empty")]):
        capsys.readouterr()
        _refused(capsys, main(argv), "no manifest.json")

"""Rankers: the shared contract, the interaction maths, injected tables, export-friendliness."""

from __future__ import annotations

import itertools

import pytest
import torch

from turborec.errors import ConfigError
from turborec.models.base import known_nets
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec
from turborec.models.rankers import (
    DLRM,
    DCNv2,
    DCNv2Config,
    DeepFM,
    DLRMConfig,
    LogisticRegression,
    RankerNet,
    build_ranker,
    warm_start_from_logreg,
)

CARDS = (5, 7, 11, 3)
KINDS = ("logreg", "dlrm", "dcnv2", "deepfm")
# every kind, plus DLRM and DCN-V2 with their optional first-order ("wide") term
VARIANTS = [(k, {}) for k in KINDS] + [("dlrm", {"wide": True}), ("dcnv2", {"wide": True, "structure": "parallel"})]


def _batch(n: int, n_dense: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(n, n_dense, generator=gen)
    sparse = torch.stack([torch.randint(0, c, (n,), generator=gen) for c in CARDS], dim=1)
    return dense, sparse


def test_kinds_are_registered() -> None:
    assert set(KINDS) <= set(known_nets())


@pytest.mark.parametrize(("kind", "config"), VARIANTS)
@pytest.mark.parametrize("n_dense", [2, 0])
def test_forward_contract(kind: str, config: dict[str, object], n_dense: int) -> None:
    torch.manual_seed(0)
    model = build_ranker(kind, config, cardinalities=CARDS, n_dense=n_dense)
    dense, sparse = _batch(6, n_dense)
    logits = model(dense, sparse)
    assert logits.shape == (6,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # rows are scored independently: one row alone gets the same logit as inside a batch
    model.eval()
    torch.testing.assert_close(model(dense[2:3], sparse[2:3]), model(dense, sparse)[2:3])
    # every sparse feature matters: changing one category of row 0 changes its logit
    changed = sparse.clone()
    changed[0, 1] = (changed[0, 1] + 1) % CARDS[1]
    assert model(dense, changed)[0] != model(dense, sparse)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_tables_come_from_the_plan(kind: str) -> None:
    plan = EmbeddingPlan().with_table("sparse_1", EmbeddingSpec("dense", {"init_std": 0.0}))
    model = build_ranker(kind, cardinalities=CARDS, n_dense=2, embeddings=plan)
    collection = model.embedding_collections()[0]
    assert list(collection.tables) == [f"sparse_{i}" for i in range(len(CARDS))]
    assert [t.num_embeddings for t in collection.tables.values()] == list(CARDS)
    assert torch.count_nonzero(collection.tables["sparse_1"].weight) == 0
    assert torch.count_nonzero(collection.tables["sparse_0"].weight) > 0


@pytest.mark.parametrize("kind", ["dlrm", "dcnv2"])
def test_wide_term_adds_logistic_regression_logit(kind: str) -> None:
    torch.manual_seed(4)
    model = build_ranker(kind, {"wide": True}, cardinalities=CARDS, n_dense=2).eval()
    assert model.wide is not None
    assert list(model.wide.weights.tables) == [f"linear_{i}" for i in range(len(CARDS))]
    dense, sparse = _batch(5)
    with_wide = model(dense, sparse)
    first_order = model.wide(dense, sparse)
    model.wide = None
    torch.testing.assert_close(with_wide, model(dense, sparse) + first_order)


@pytest.mark.parametrize("kind", ["dlrm", "dcnv2"])
@pytest.mark.parametrize("n_dense", [2, 0])
def test_warm_start_reproduces_logistic_regression_then_trains_deep_part(kind: str, n_dense: int) -> None:
    torch.manual_seed(5)
    logreg = build_ranker("logreg", cardinalities=CARDS, n_dense=n_dense)
    assert isinstance(logreg, LogisticRegression)
    with torch.no_grad():  # a fitted-looking regression: non-zero weights and bias
        for p in logreg.parameters():
            p.normal_()
    model = build_ranker(kind, {"wide": True}, cardinalities=CARDS, n_dense=n_dense)
    dense, sparse = _batch(9, n_dense)
    assert not torch.allclose(model(dense, sparse), logreg(dense, sparse))
    warm_start_from_logreg(model, logreg)
    torch.testing.assert_close(model(dense, sparse), logreg(dense, sparse))
    # the deep part still gets gradients through the zeroed output layer, so it can learn
    model(dense, sparse).sum().backward()
    assert model.output_layer().weight.grad is not None
    assert torch.count_nonzero(model.output_layer().weight.grad) > 0


def test_warm_start_needs_a_wide_term_and_matching_features() -> None:
    logreg = build_ranker("logreg", cardinalities=CARDS, n_dense=2)
    assert isinstance(logreg, LogisticRegression)
    with pytest.raises(ConfigError, match="wide=True"):
        warm_start_from_logreg(build_ranker("dlrm", cardinalities=CARDS, n_dense=2), logreg)
    with pytest.raises(ConfigError, match="cardinalities"):
        warm_start_from_logreg(build_ranker("dcnv2", {"wide": True}, cardinalities=(5, 7, 12, 3), n_dense=2), logreg)
    with pytest.raises(ConfigError, match="output layer"):
        build_ranker("deepfm", cardinalities=CARDS, n_dense=2).output_layer()


def test_dlrm_interaction_is_pairwise_dots() -> None:
    torch.manual_seed(1)
    model = DLRM(DLRMConfig(embedding_dim=4, bottom_mlp=(8,), top_mlp=()), cardinalities=CARDS, n_dense=2).eval()
    dense, sparse = _batch(3)
    vectors = [model.bottom(dense)] + [t(sparse[:, i]) for i, t in enumerate(model.embeddings.tables.values())]  # type: ignore[misc]
    dots = [(vectors[i] * vectors[j]).sum(-1) for i, j in itertools.combinations(range(len(vectors)), 2)]
    expected = model.top(torch.cat([vectors[0], torch.stack(dots, dim=1)], dim=1)).squeeze(-1)
    torch.testing.assert_close(model(dense, sparse), expected)


def test_deepfm_second_order_term_equals_pair_sum() -> None:
    torch.manual_seed(2)
    model = DeepFM(cardinalities=CARDS, n_dense=2).eval()
    dense, sparse = _batch(3)
    vectors = model.embeddings(sparse)
    pair_sum = sum((vectors[:, i] * vectors[:, j]).sum(-1) for i, j in itertools.combinations(range(len(CARDS)), 2))
    first = model.linear(sparse).sum(dim=(1, 2)) + model.bias + model.dense_linear(dense).squeeze(-1)  # type: ignore[misc]
    deep = model.deep(torch.cat([dense, vectors.flatten(1)], dim=1)).squeeze(-1)
    torch.testing.assert_close(model(dense, sparse), first + pair_sum + deep)


def test_logreg_is_linear_in_one_hot_features() -> None:
    model = LogisticRegression(cardinalities=CARDS, n_dense=2).eval()
    dense, sparse = _batch(4)
    weights = [t.weight[:, 0] for t in model.weights.tables.values()]  # type: ignore[union-attr]
    expected = sum(w[sparse[:, i]] for i, w in enumerate(weights)) + model.bias + dense @ model.dense_linear.weight[0]  # type: ignore[union-attr]
    torch.testing.assert_close(model(dense, sparse), expected)


def test_dcn_parallel_low_rank_and_config_errors() -> None:
    model = DCNv2(DCNv2Config(structure="parallel", low_rank=4, n_cross=2, deep=(8,)), cardinalities=CARDS, n_dense=2)
    assert model(*_batch(5)).shape == (5,)
    with pytest.raises(ConfigError, match="structure"):
        DCNv2Config(structure="diagonal")
    with pytest.raises(ConfigError, match="dropout"):
        DCNv2Config(dropout=1.5)
    with pytest.raises(ConfigError, match="unknown config keys"):
        build_ranker("dcnv2", {"embedding_dim": 8, "n_crosses": 2}, cardinalities=CARDS, n_dense=2)
    with pytest.raises(ConfigError, match=r"not a CTR ranker|unknown network kind"):
        build_ranker("mf", cardinalities=CARDS, n_dense=2)
    with pytest.raises(ConfigError, match="cardinalities"):
        build_ranker("dlrm", cardinalities=(), n_dense=2)
    with pytest.raises(ConfigError, match="needs a DLRMConfig"):
        DLRM(DCNv2Config(), cardinalities=CARDS, n_dense=2)  # type: ignore[arg-type]


def test_build_ranker_from_dict_keeps_config() -> None:
    model = build_ranker("dcnv2", {"embedding_dim": 4, "deep": [16, 8]}, cardinalities=CARDS, n_dense=2)
    assert isinstance(model, RankerNet) and model.config == DCNv2Config(embedding_dim=4, deep=(16, 8))
    assert type(model.config).from_dict(model.config.to_dict()) == model.config


@pytest.mark.parametrize(("kind", "config"), VARIANTS)
def test_forward_exports_with_dynamic_batch(kind: str, config: dict[str, object]) -> None:
    """No data-dependent control flow: torch.export traces it once for any batch size."""
    torch.manual_seed(3)
    model = build_ranker(kind, config, cardinalities=CARDS, n_dense=2).eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, _batch(4), dynamic_shapes=({0: batch}, {0: batch}))
    dense, sparse = _batch(9, seed=5)
    torch.testing.assert_close(program.module()(dense, sparse), model(dense, sparse))


@pytest.mark.parametrize("fused", [True, False])
def test_one_fused_lookup_equals_a_lookup_per_table_bit_for_bit(fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from turborec.models.rankers import common

    if not fused:  # tables too big to concatenate each call: the per-table path
        monkeypatch.setattr(common, "FUSED_LOOKUP_MAX", 10)
    torch.manual_seed(0)
    emb = common.SparseEmbeddings(CARDS, 4, EmbeddingPlan())
    assert (emb._fusable() is not None) == fused
    _, sparse = _batch(64)
    out = emb(sparse)
    (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
    grads = [t.weight.grad.clone() for t in emb.tables.values()]  # type: ignore[union-attr]
    emb.zero_grad()
    want = torch.stack([t(sparse[:, i]) for i, t in enumerate(emb.tables.values())], dim=1)
    (want * torch.arange(want.numel()).reshape(want.shape)).sum().backward()
    assert torch.equal(out, want)
    assert all(torch.equal(g, t.weight.grad) for g, t in zip(grads, emb.tables.values()))  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", KINDS)
def test_state_saved_before_calibration_existed_loads_as_identity(kind: str) -> None:
    net = build_ranker(kind, {}, cardinalities=CARDS, n_dense=2)
    net.calibration.copy_(torch.tensor([2.0, -1.0]))
    dense, sparse = _batch(8)
    old_state = {k: v for k, v in net.state_dict().items() if k != "calibration"}  # what older artifacts hold
    fresh = build_ranker(kind, {}, cardinalities=CARDS, n_dense=2)
    fresh.calibration.copy_(torch.tensor([3.0, 3.0]))
    fresh.load_state_dict(old_state)  # strict: every other key must still match
    assert fresh.calibration.tolist() == [1.0, 0.0]
    net.calibration.copy_(torch.tensor([1.0, 0.0]))
    assert torch.equal(fresh(dense, sparse), net(dense, sparse))
    with pytest.raises(RuntimeError, match="Missing key"):  # any other missing weight still fails loudly
        fresh.load_state_dict({k: v for k, v in old_state.items() if not k.endswith("bias")})

"""Every Runner kind matches eager PyTorch within its documented tolerance, and checks its inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from turborec.backends import Runner, make_runner, runner_kinds, tile_inputs
from turborec.errors import ConfigError, DataError

pytest.importorskip("onnxruntime")

N_USERS, N_ITEMS, HISTORY, DIM = 40, 120, 6, 8


class TinyUserTower(nn.Module):
    """(users [B], history [B, L] with -1 padding) -> [B, DIM]: embeddings, a masked mean, an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(N_USERS, DIM)
        self.items = nn.Embedding(N_ITEMS, DIM)
        self.mlp = nn.Sequential(nn.Linear(2 * DIM, 32), nn.ReLU(), nn.Linear(32, DIM))

    def forward(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = (history >= 0).unsqueeze(-1).float()
        pooled = (self.items(history.clamp_min(0)) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        known = (users >= 0).unsqueeze(1).float()
        return self.mlp(torch.cat([self.users(users.clamp_min(0)) * known, pooled], dim=1))


class TinyRanker(nn.Module):
    """(dense [B, 5] float, sparse [B, 3] long) -> logits [B]: a DLRM in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.tables = nn.Embedding(3 * 50, DIM)
        self.register_buffer("offsets", torch.arange(3) * 50)
        self.bottom = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, DIM), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(4 * DIM + 6, 32), nn.ReLU(), nn.Linear(32, 1))
        self.register_buffer("pairs", torch.triu_indices(4, 4, 1))

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        z = torch.cat([x.unsqueeze(1), self.tables(sparse + self.offsets)], dim=1)
        dots = torch.bmm(z, z.transpose(1, 2))[:, self.pairs[0], self.pairs[1]]
        return self.top(torch.cat([z.flatten(1), dots], dim=1)).squeeze(1)


def _tower_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    history = rng.integers(0, N_ITEMS, (batch, HISTORY))
    history[:, rng.integers(1, HISTORY) :] = -1  # right padding
    users = rng.integers(-1, N_USERS, batch)  # some anonymous
    return {"users": users, "history": history}


def _ranker_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense": rng.standard_normal((batch, 5)).astype(np.float32), "sparse": rng.integers(0, 50, (batch, 3))}


MODELS = {"tower": (TinyUserTower, _tower_inputs), "ranker": (TinyRanker, _ranker_inputs)}
FAST_KINDS = ["torch-eager", "onnx-fp32", "onnx-int8"]


def _check_against_eager(kind: str, model_name: str) -> Runner:
    factory, make_inputs = MODELS[model_name]
    torch.manual_seed(0)
    module = factory()
    runner = make_runner(kind, module, make_inputs(4, seed=0), threads=1)
    for batch in (1, 7, 64):
        inputs = make_inputs(batch, seed=batch)
        with torch.inference_mode():
            reference = module(**{n: torch.from_numpy(a) for n, a in inputs.items()}).numpy()
        output = runner(inputs)
        assert output.shape == reference.shape and output.dtype == np.float32
        assert runner.tolerance.allows(output, reference), (kind, batch, runner.tolerance.error(output, reference))
    return runner


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("kind", FAST_KINDS)
def test_runner_matches_eager_within_tolerance(kind: str, model_name: str) -> None:
    _check_against_eager(kind, model_name)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_compiled_runner_matches_eager_within_tolerance(model_name: str) -> None:
    runner = _check_against_eager("torch-compile", model_name)
    assert runner.name == "torch-compile"


def test_every_registered_kind_documents_a_tolerance() -> None:
    kinds = runner_kinds()
    assert {"torch-eager", "torch-compile", "onnx-fp32", "onnx-int8"} <= set(kinds)
    assert kinds["torch-eager"].rtol == 0.0
    assert kinds["onnx-int8"].rtol > kinds["onnx-fp32"].rtol


@pytest.mark.parametrize("kind", ["onnx-fp32", "onnx-int8"])
def test_export_leaves_the_module_in_eval_mode(kind: str) -> None:
    """Exporting must not switch dropout back on in the module that eager runners share."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    example = {"input": np.ones((3, 4), np.float32)}
    eager = make_runner("torch-eager", module, example)
    before = eager(example)
    runner = make_runner(kind, module, example)
    assert not any(m.training for m in module.modules())
    np.testing.assert_array_equal(eager(example), before)
    assert runner.tolerance.allows(runner(example), before)


def test_int8_graph_is_quantized_and_differs_from_fp32() -> None:
    import onnx

    torch.manual_seed(0)
    module, example = TinyRanker(), _ranker_inputs(4, 0)
    fp32 = make_runner("onnx-fp32", module, example)
    int8 = make_runner("onnx-int8", module, example)
    graph = onnx.load_from_string(int8.model_bytes).graph  # type: ignore[attr-defined]
    ops = {node.op_type for node in graph.node}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops
    assert "Gemm" not in ops
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert len(int8_weights) == 4, "every Linear's weight is stored as int8"
    inputs = _ranker_inputs(64, 5)
    assert not np.array_equal(fp32(inputs), int8(inputs)), "int8 rounding must show"


def test_saved_onnx_model_is_self_contained(tmp_path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    runner = make_runner("onnx-fp32", TinyUserTower(), _tower_inputs(4, 0))
    path = runner.save_model(tmp_path / "onnx" / "tower.onnx")  # type: ignore[attr-defined]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tower.onnx"], "weights inline, no .data file"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = _tower_inputs(9, 3)
    np.testing.assert_allclose(session.run(["output"], inputs)[0], runner(inputs), rtol=1e-6)


@pytest.mark.parametrize("kind", ["torch-eager", "onnx-fp32"])
def test_max_batch_splits_without_changing_results(kind: str) -> None:
    torch.manual_seed(0)
    module, example = TinyUserTower(), _tower_inputs(4, 0)
    whole = make_runner(kind, module, example)
    chunked = make_runner(kind, module, example, max_batch=5)
    inputs = _tower_inputs(23, 7)
    np.testing.assert_allclose(chunked(inputs), whole(inputs), rtol=1e-6, atol=1e-7)


def test_thread_settings_reach_the_backend() -> None:
    torch.manual_seed(0)
    module, example = TinyRanker(), _ranker_inputs(4, 0)
    onnx_runner = make_runner("onnx-fp32", module, example, threads=2)
    assert onnx_runner._session.get_session_options().intra_op_num_threads == 2  # type: ignore[attr-defined]
    before = torch.get_num_threads()
    try:
        eager = make_runner("torch-eager", module, example, threads=1)
        torch.set_num_threads(2)
        eager(example)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_bad_inputs_raise_data_error(kind: str) -> None:
    torch.manual_seed(0)
    runner = make_runner(kind, TinyUserTower(), _tower_inputs(4, 0))
    good = _tower_inputs(3, 1)
    with pytest.raises(DataError, match="missing"):
        runner({"users": good["users"]})
    with pytest.raises(DataError, match="unknown"):
        runner({**good, "extra": good["users"]})
    with pytest.raises(DataError, match="shape"):
        runner({**good, "history": good["history"][:, :3]})
    with pytest.raises(DataError, match="integers"):
        runner({**good, "users": good["users"].astype(np.float32)})
    with pytest.raises(DataError, match="batch"):
        runner({**good, "users": good["users"][:2]})
    empty = runner({n: a[:0] for n, a in good.items()})
    assert empty.shape == (0, DIM)
    assert runner({n: a.astype(np.int32) for n, a in good.items()}).shape == (3, DIM), "narrower ints are widened"


def test_configuration_errors() -> None:
    module, example = TinyUserTower(), _tower_inputs(4, 0)
    with pytest.raises(ConfigError, match="unknown runner kind 'tensorrt'"):
        make_runner("tensorrt", module, example)
    with pytest.raises(ConfigError, match="no option"):
        make_runner("onnx-fp32", module, example, per_channel=True)
    with pytest.raises(ConfigError, match="threads"):
        make_runner("torch-eager", module, example, threads=0)
    with pytest.raises(ConfigError, match="batch"):
        make_runner("torch-eager", module, {"users": example["users"], "history": example["history"][:2]})

    class TwoOutputs(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ConfigError, match="one tensor"):
        make_runner("torch-eager", TwoOutputs(), {"x": np.ones((2, 3), np.float32)})


def test_warmup_and_tiling() -> None:
    example = _ranker_inputs(3, 0)
    tiled = tile_inputs(example, 7)
    assert tiled["dense"].shape == (7, 5)
    np.testing.assert_array_equal(tiled["sparse"][3], example["sparse"][0])
    runner = make_runner("onnx-int8", TinyRanker(), example, warmup=True)
    assert runner(tiled).shape == (7,)

"""FusedDLRM and GpuRankerRunner, PyTorch path (runs on CPU in CI): same function as the project's DLRM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turborec.backends import make_runner, runner_kinds
from turborec.backends.gpu import FusedDLRM, GpuRankerRunner
from turborec.errors import ConfigError, DataError
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec
from turborec.models.rankers.dlrm import DLRM, DLRMConfig

CARDS = [50, 7, 100, 30, 3]


def make_dlrm(n_dense: int, dim: int = 16, plan: EmbeddingPlan | None = None) -> DLRM:
    cfg = DLRMConfig(embedding_dim=dim, bottom_mlp=(20, 11), top_mlp=(30, 12), dropout=0.1)
    return DLRM(cfg, cardinalities=CARDS, n_dense=n_dense, embeddings=plan or EmbeddingPlan()).eval()


def random_rows(gen: torch.Generator, batch: int, n_dense: int) -> tuple[torch.Tensor, torch.Tensor]:
    dense = torch.randn(batch, n_dense, generator=gen)
    sparse = torch.stack([torch.randint(0, c, (batch,), generator=gen) for c in CARDS], dim=1)
    return dense, sparse


@pytest.mark.parametrize("n_dense", [13, 0])
@pytest.mark.parametrize("dim", [16, 12])
def test_fused_dlrm_matches_float64_dlrm(gen: torch.Generator, n_dense: int, dim: int) -> None:
    torch.manual_seed(3)
    model = make_dlrm(n_dense, dim)
    dense, sparse = random_rows(gen, 33, n_dense)
    with torch.no_grad():
        ref = model.double()(dense.double(), sparse)
        fused = FusedDLRM(model.float(), dtype=torch.float32, use_triton=False)
        out = fused(dense, sparse)
    assert out.dtype == torch.float32 and out.shape == (33,)
    assert ((out.double() - ref).norm() / ref.norm()) < 1e-5
    assert fused.top_width % 8 == 0 and fused.dense_width % 8 == 0


def test_fused_dlrm_bf16_is_close(gen: torch.Generator) -> None:
    torch.manual_seed(4)
    model = make_dlrm(13)
    dense, sparse = random_rows(gen, 64, 13)
    with torch.no_grad():
        ref = model.double()(dense.double(), sparse)
        out = FusedDLRM(model.float(), use_triton=False)(dense, sparse)
    assert ((out.double() - ref).norm() / ref.norm()) < 3e-2


def test_fused_dlrm_takes_half_tables_but_not_int8() -> None:
    half = make_dlrm(4, plan=EmbeddingPlan(default=EmbeddingSpec("fp16")))
    assert FusedDLRM(half).table.shape == (sum(CARDS), 16)
    with pytest.raises(ConfigError, match="no float weight"):
        FusedDLRM(make_dlrm(4, plan=EmbeddingPlan(default=EmbeddingSpec("int8"))))


def example(gen: torch.Generator, batch: int, n_dense: int = 13) -> dict[str, np.ndarray]:
    dense, sparse = random_rows(gen, batch, n_dense)
    return {"dense": dense.numpy(), "sparse": sparse.numpy()}


def test_runner_numpy_in_numpy_out(gen: torch.Generator) -> None:
    torch.manual_seed(5)
    model = make_dlrm(13)
    runner = make_runner("gpu-dlrm", model, example(gen, 2), device="cpu", dtype=torch.float32)
    assert isinstance(runner, GpuRankerRunner) and "gpu-dlrm" in runner_kinds()
    inputs = example(gen, 10)
    out = runner(inputs)
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(inputs["dense"]).double(), torch.from_numpy(inputs["sparse"])).numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (10,)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert runner({k: v[:0] for k, v in inputs.items()}).shape == (0,)


def test_runner_bf16_within_its_tolerance(gen: torch.Generator) -> None:
    torch.manual_seed(6)
    model = make_dlrm(13)
    runner = make_runner("gpu-dlrm", model, example(gen, 2), device="cpu")
    inputs = example(gen, 50)
    with torch.no_grad():
        ref = model(torch.from_numpy(inputs["dense"]), torch.from_numpy(inputs["sparse"])).numpy()
    assert runner.tolerance.allows(runner(inputs), ref)


def test_runner_rejects_bad_rows_and_models(gen: torch.Generator) -> None:
    runner = make_runner("gpu-dlrm", make_dlrm(13), example(gen, 2), device="cpu", dtype=torch.float32)
    inputs = example(gen, 4)
    bad = inputs["sparse"].copy()
    bad[2, 1] = CARDS[1]
    with pytest.raises(DataError, match=r"sparse\[2, 1\] = 7 is outside table 1"):
        runner({"dense": inputs["dense"], "sparse": bad})
    with pytest.raises(DataError, match="input 'sparse' has shape"):
        runner({"dense": inputs["dense"], "sparse": inputs["sparse"][:, :3]})
    nan = inputs["dense"].copy()
    nan[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        runner({"dense": nan, "sparse": inputs["sparse"]})
    with pytest.raises(DataError, match="missing"):
        runner({"dense": inputs["dense"]})
    with pytest.raises(ConfigError, match=r"needs a models\.rankers\.DLRM"):
        make_runner("gpu-dlrm", torch.nn.Linear(3, 1), {"x": np.zeros((1, 3), np.float32)})


def test_runner_accepts_a_bf16_model(gen: torch.Generator) -> None:
    torch.manual_seed(7)
    model = make_dlrm(13)
    reference = make_runner("gpu-dlrm", model, example(gen, 2), device="cpu", dtype=torch.float32)
    half = make_runner("gpu-dlrm", model.to(torch.bfloat16), example(gen, 2), device="cpu")
    inputs = example(gen, 20)
    assert reference.tolerance.allows(half(inputs), reference(inputs))

"""int8 / int4 lookups export to ONNX (gathers, bit ops, arithmetic) and run in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from turborec.models.compact import PrunedRowEmbedding, quantize_table
from turborec.models.embeddings import EmbeddingSpec, pooled_lookup

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class PooledLookup(nn.Module):
    """What a user tower does with a table: rows of a padded history, masked mean."""

    def __init__(self, table: nn.Module) -> None:
        super().__init__()
        self.table = table

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return pooled_lookup(self.table, history)


def make_table(kind: str) -> nn.Module:
    torch.manual_seed(0)
    dense = nn.Embedding(1000, 33)  # odd dim: int4 pads a nibble
    with torch.no_grad():
        dense.weight.mul_(torch.rand(1000, 1) * 5)
    if kind == "pruned_rows/int4":
        counts = np.arange(1000, dtype=np.float64)
        return PrunedRowEmbedding.from_counts(dense, counts, 200, EmbeddingSpec("int4"))
    return quantize_table(dense, kind)


@pytest.mark.parametrize("kind", ["int8", "int4", "pruned_rows/int4"])
def test_quantized_lookup_runs_in_onnxruntime(kind: str, tmp_path: Path) -> None:
    model = PooledLookup(make_table(kind)).eval()
    example = torch.randint(0, 1000, (4, 6))
    path = tmp_path / "lookup.onnx"
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    torch.onnx.export(
        model, (example,), str(path), dynamo=True, input_names=["history"], output_names=["vector"],
        dynamic_shapes={"history": {0: batch, 1: length}}, verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    history = torch.randint(0, 1000, (7, 11), generator=torch.Generator().manual_seed(1))
    history[:, 8:] = -1  # right-padded, as serving sends it
    got = session.run(None, {"history": history.numpy()})[0]
    want = model(history).numpy()
    assert got.shape == (7, 33)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the graph holds the compact storage (uint8 codes), not a float table
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    floats = [i for i in inits.values() if i.data_type == onnx.TensorProto.FLOAT and int(np.prod(i.dims)) >= 1000 * 33]
    uint8 = [i for i in inits.values() if i.data_type == onnx.TensorProto.UINT8]
    assert not floats and uint8

"""``traced_for_inference`` keeps a trace only when it reproduces eager exactly."""

from __future__ import annotations

import torch
from torch import nn

from turborec.backends import traced_for_inference
from turborec.models.rankers import DLRM, DLRMConfig

CARDS = (50, 7, 9)


def ranker_inputs(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(0, c, (rows,), generator=g) for c in CARDS], dim=1)
    return torch.randn(rows, 4, generator=g), sparse


def test_a_traced_dlrm_gives_eagers_logits_bit_for_bit_at_other_batch_sizes() -> None:
    torch.manual_seed(0)
    net = DLRM(DLRMConfig(embedding_dim=8, bottom_mlp=(16,), top_mlp=(16,)), cardinalities=CARDS, n_dense=4)
    traced = traced_for_inference(net, ranker_inputs(32, 0), [ranker_inputs(5, 1)])
    assert isinstance(traced, torch.jit.ScriptModule)
    assert not net.training  # put in eval mode: dropout off for serving
    for rows, seed in ((1, 2), (300, 3)):
        inputs = ranker_inputs(rows, seed)
        with torch.no_grad():
            assert torch.equal(traced(*inputs), net(*inputs))


class BranchesOnValues(nn.Module):
    """Python control flow on a tensor's value: a trace records one branch only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if bool(x.sum() > 0) else x * 3


def test_a_module_that_branches_on_values_stays_eager_when_a_check_takes_the_other_branch() -> None:
    module = BranchesOnValues()
    assert traced_for_inference(module, (torch.ones(3),), [(-torch.ones(3),)]) is module
    # with no check input that takes the other branch, the trace is (wrongly but provably) kept: say so
    assert isinstance(traced_for_inference(module, (torch.ones(3),)), torch.jit.ScriptModule)


class ReturnsADict(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x + 1}


def test_a_module_that_cannot_be_traced_as_is_stays_eager() -> None:
    module = ReturnsADict()
    assert traced_for_inference(module, (torch.ones(2),)) is module

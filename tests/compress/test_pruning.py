"""Magnitude (masked) and neuron (structural) pruning of MLP layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.compress.nets import batch, rebuild, through_artifact, tiny_net
from turborec.compress import (
    enforce_masks,
    find_hidden_layers,
    mask_gradients,
    model_nbytes,
    prepare_for_load,
    prune_magnitude,
    prune_neurons,
    remove_masks,
    sparsity,
    transform_records,
)
from turborec.errors import ConfigError


def scores(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(*batch())


def linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.mlp if isinstance(m, nn.Linear)]


def finetune(net: nn.Module, steps: int = 100) -> list[float]:
    """A few Adam steps pulling user vectors towards fixed targets (weight decay on)."""
    users, history = batch(seed=5, b=64)
    target = torch.randn(64, net.config.dim, generator=torch.Generator().manual_seed(6))
    opt = torch.optim.AdamW(net.mlp.parameters(), lr=1e-2, weight_decay=0.1)
    net.train()
    losses = []
    for _ in range(steps):
        loss = (net.user_vectors(users, history) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_layer_magnitude_pruning_zeroes_the_smallest_weights_of_each_layer() -> None:
    net = tiny_net()
    pruned = prune_magnitude(net, 0.6)
    for old, new in zip(linears(net), linears(pruned)):
        w, z = old.weight.detach(), new.weight.detach()
        n_zero = int((z == 0).sum())
        assert n_zero == round(0.6 * w.numel())
        # kept weights are untouched and none is smaller than a pruned one
        kept = z != 0
        assert torch.equal(z[kept], w[kept])
        assert float(w[kept].abs().min()) >= float(w[~kept].abs().max())
        assert torch.equal(new.bias, old.bias)
    assert sparsity(pruned) == pytest.approx(0.6, abs=1e-3)
    assert sparsity(net) == 0.0
    assert set(pruned.state_dict()) == set(net.state_dict())  # masks are not saved: the zeros are
    assert not torch.equal(scores(pruned), scores(net))


def test_global_scope_ranks_all_layers_together() -> None:
    net = tiny_net()
    with torch.no_grad():
        net.mlp[0].weight.mul_(100)  # one layer of large weights keeps nearly all of them globally
    pruned = prune_magnitude(net, 0.5, scope="global")
    total = sum(m.weight.numel() for m in linears(net))
    zeros = [int((m.weight == 0).sum()) for m in linears(pruned)]
    assert sum(zeros) == round(0.5 * total)
    # one threshold for all layers: no pruned weight is larger than a kept one anywhere
    pruned_abs = torch.cat([o.weight.detach()[n.weight == 0].abs() for o, n in zip(linears(net), linears(pruned))])
    kept_abs = torch.cat([n.weight.detach()[n.weight != 0].abs() for n in linears(pruned)])
    assert float(pruned_abs.max()) <= float(kept_abs.min())
    # so the scaled-up layer loses far fewer weights than the others
    frac = [z / m.weight.numel() for z, m in zip(zeros, linears(net))]
    assert frac[0] < 0.1 and frac[1] > 0.5 and frac[2] > 0.5


def test_pruned_weights_stay_zero_while_fine_tuning(tmp_path: Path) -> None:
    pruned = prune_magnitude(tiny_net(), 0.7)
    masks = [m.weight != 0 for m in linears(pruned)]
    losses = finetune(pruned)
    assert losses[-1] < 0.7 * losses[0]
    for m, mask in zip(linears(pruned), masks):
        assert torch.equal(m.weight != 0, mask)
    # a deepcopy loses gradient hooks: re-install them, or re-zero after each step
    import copy

    copied = copy.deepcopy(pruned)
    finetune(copied, steps=3)
    assert sparsity(copied) < 0.7 - 1e-3  # weight decay and stale moments moved the zeros
    assert enforce_masks(copied) == 3
    assert sparsity(copied) == pytest.approx(0.7, abs=1e-3)
    copied2 = copy.deepcopy(pruned)
    mask_gradients(copied2)
    finetune(copied2, steps=3)
    assert sparsity(copied2) == pytest.approx(0.7, abs=1e-3)
    remove_masks(pruned)
    assert enforce_masks(pruned) == 0
    # an artifact keeps the zeros: same state keys, strict load
    fresh = rebuild(pruned)
    fresh.load_state_dict(through_artifact(pruned.state_dict(), tmp_path / "a"), strict=True)
    assert sparsity(fresh) == pytest.approx(0.7, abs=1e-3)


@pytest.mark.parametrize("amount", [0.0, 1.0, 1.5, -0.1, True, "0.5"])
def test_prune_ratios_outside_zero_one_are_config_errors(amount: object) -> None:
    net = tiny_net()
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        prune_magnitude(net, amount)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        prune_neurons(net, amount)  # type: ignore[arg-type]


def test_neuron_pruning_makes_layers_physically_smaller(tmp_path: Path) -> None:
    net = tiny_net(hidden=(32, 16))
    assert [h.path for h in find_hidden_layers(net)] == ["mlp.0", "mlp.2"]
    pruned = prune_neurons(net, 0.5)
    shapes = [(m.in_features, m.out_features) for m in linears(pruned)]
    assert shapes == [(16, 16), (16, 8), (8, 8)]
    assert pruned.mlp[0].weight.shape == (16, 16) and pruned.mlp[2].weight.shape == (8, 16)
    assert model_nbytes(pruned) < model_nbytes(net)
    out = scores(pruned)
    assert out.shape == scores(net).shape and bool(torch.isfinite(out).all())
    assert transform_records(pruned)[-1] == {"transform": "prune_neurons", "amount": 0.5,
                                             "widths": {"mlp.0": 16, "mlp.2": 8}}
    # artifact: the rebuilt net is resized from the records, then the state loads strictly
    fresh = rebuild(pruned)
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh.load_state_dict(pruned.state_dict(), strict=True)
    prepare_for_load(fresh, transform_records(pruned))
    fresh.load_state_dict(through_artifact(pruned.state_dict(), tmp_path / "a"), strict=True)
    assert torch.equal(scores(fresh.eval()), out)


def test_removing_dead_units_leaves_the_function_unchanged() -> None:
    """Units whose outgoing weights are zero are the least important; dropping them must not change outputs,
    which checks that the next layer keeps exactly the matching input columns."""
    net = tiny_net(hidden=(32,))
    dead = torch.tensor([1, 4, 5, 9, 12, 20, 21, 30])
    with torch.no_grad():
        net.mlp[2].weight[:, dead] = 0
    pruned = prune_neurons(net, 0.25)  # 8 of 32
    assert pruned.mlp[0].out_features == 24 and pruned.mlp[2].in_features == 24
    torch.testing.assert_close(scores(pruned), scores(net), rtol=0, atol=1e-6)
    # pruning more must remove live units too, and change the output
    assert not torch.allclose(scores(prune_neurons(net, 0.5)), scores(net), atol=1e-4)


def test_neuron_pruning_goes_through_batchnorm() -> None:
    net = tiny_net(hidden=(32,), batchnorm=True)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(*batch(seed=9, b=32))  # give BatchNorm running statistics
    net.eval()
    with torch.no_grad():
        net.mlp[3].weight[:, :8] = 0  # mlp: Linear, BatchNorm1d, ReLU, Linear
    pruned = prune_neurons(net, 0.25)
    bn = pruned.mlp[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == 24
    assert torch.equal(bn.running_mean, net.mlp[1].running_mean[8:])
    torch.testing.assert_close(scores(pruned), scores(net), rtol=0, atol=1e-5)


def test_layer_selection_is_checked() -> None:
    net = tiny_net()
    with pytest.raises(ConfigError, match=r"no prunable hidden layer at \['mlp.4'\]"):
        prune_neurons(net, 0.5, layers=["mlp.4"])  # the output layer feeds the dot product: not prunable
    only = prune_neurons(net, 0.5, layers=["mlp.2"])
    assert [(m.in_features, m.out_features) for m in linears(only)] == [(16, 32), (32, 8), (8, 8)]
    with pytest.raises(ConfigError, match="scope"):
        prune_magnitude(net, 0.5, scope="row")


def test_records_that_do_not_fit_are_artifact_errors() -> None:
    from turborec.errors import ArtifactError

    fresh = tiny_net()
    with pytest.raises(ArtifactError, match="unknown"):
        prepare_for_load(fresh, [{"transform": "distill"}])
    with pytest.raises(ArtifactError, match="does not fit its 32 units"):
        prepare_for_load(fresh, [{"transform": "prune_neurons", "widths": {"mlp.0": 40}}])
    with pytest.raises(ArtifactError, match=r"no hidden layer at 'mlp\.4'"):
        prepare_for_load(fresh, [{"transform": "prune_neurons", "widths": {"mlp.4": 4}}])
    with pytest.raises(ArtifactError, match="malformed"):
        prepare_for_load(fresh, [{"transform": "prune_neurons"}])

"""The blocks read like their formulas, and networks redraw their weights in the notebook's order."""
import pytest
import torch
import torch.nn.functional as F

from cnnexp.blocks import Block, PlainBlock, build, fc1_of, linear_weights
from cnnexp.config import RunConfig
from cnnexp.schema import BLOCK_KIND


def explicit_f(block, x, act=F.relu):
    return act(x @ block.fc1.weight.T) @ block.fc2.weight.T


def test_forwards_are_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(3, 5)
    plain, residual = Block(BLOCK_KIND["plain"], 5), Block(BLOCK_KIND["residual"], 5)
    rezero, prenorm = Block(BLOCK_KIND["rezero"], 5, alpha_init=0.25), Block(BLOCK_KIND["prenorm"], 5)
    torch.testing.assert_close(plain(x), explicit_f(plain.f, x))
    torch.testing.assert_close(residual(x), x + explicit_f(residual.f, x))
    torch.testing.assert_close(rezero(x), x + 0.25 * explicit_f(rezero.f, x))
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(prenorm(x), x + explicit_f(prenorm.f, normed))


@pytest.mark.parametrize("activation, fn", [("relu", F.relu), ("tanh", torch.tanh), ("gelu", F.gelu)])
def test_activations(activation, fn):
    block = PlainBlock(4, activation)
    x = torch.randn(2, 4)
    torch.testing.assert_close(block(x), explicit_f(block, x, fn))


@pytest.mark.parametrize("kind", ["plain", "residual", "rezero", "prenorm"])
def test_networks_are_depth_blocks_redrawn_block_by_block_fc1_then_fc2(kind):
    net = build(kind, RunConfig(d=3, depth=4))
    assert len(net) == 4
    names = {id(p): n for n, p in net.named_parameters()}
    order = [names[id(w)] for w in linear_weights(net)]
    assert [n.split(".")[0] for n in order] == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert all(n.endswith(("fc1.weight", "fc2.weight")) for n in order)
    assert [n.endswith("fc1.weight") for n in order] == [True, False] * 4
    assert all(fc1_of(b).weight is w for b, w in zip(net, linear_weights(net)[::2]))


def test_plain_and_residual_redraw_every_parameter_in_parameters_order():
    for kind in ("plain", "residual"):
        net = build(kind, RunConfig(d=3, depth=2))
        assert [id(p) for p in net.parameters()] == [id(w) for w in linear_weights(net)]


def test_rezero_gate_starts_at_alpha_init_and_is_not_redrawn():
    net = build("rezero", RunConfig(d=3, depth=2, alpha_init=0.5))
    gates = [b.alpha for b in net]
    assert all(g.item() == 0.5 and g.requires_grad for g in gates)
    assert not any(g is w for g in gates for w in linear_weights(net))


def test_dtype():
    assert build("plain", RunConfig(d=3, dtype="float64"))[0].f.fc1.weight.dtype == torch.float64

"""The probe against the notebook's published numbers and an independent torch.autograd computation."""
import math

import pytest
import torch

from cnnexp.config import RunConfig
from cnnexp.probe import probe

BOTH = ("plain", "residual")

# Printed by the notebook for d=256, batch=64, small_init=1e-4, seed=123 (6 significant digits).
NOTEBOOK = {
    "plain": dict(loss=3.3215e-12, x_grad_norm=1.02284e-13, a1_grad_norm=5.57527e-11, w_norm=0.0362999,
                  param_grad_norm=1.71966e-09),
    "residual": dict(loss=1.00448, x_grad_norm=0.0156599, a1_grad_norm=1.75803e-05, w_norm=0.0362999,
                     param_grad_norm=0.000428953),
}


def metrics(config, blocks=BOTH) -> dict[str, dict[str, float]]:
    return {r.block: r.metrics for r in probe(config, blocks)}


def reference(config, block: str) -> dict[str, float]:
    """The study computed independently: explicit matrices, torch.autograd.grad, float64 sums."""
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, requires_grad=True)
    w1 = (config.small_init * torch.randn(config.d, config.d)).requires_grad_()
    w2 = (config.small_init * torch.randn(config.d, config.d)).requires_grad_()
    a1 = x @ w1.T
    f = torch.relu(a1) @ w2.T
    out = x + f if block == "residual" else f
    loss = (out * out).sum() / out.numel()
    gx, ga1, gw1, gw2 = torch.autograd.grad(loss, [x, a1, w1, w2])
    norm = lambda *ts: math.sqrt(sum(t.double().pow(2).sum().item() for t in ts))  # noqa: E731
    return dict(loss=loss.item(), x_grad_norm=norm(gx), a1_grad_norm=norm(ga1), w_norm=norm(w1, w2),
                param_grad_norm=norm(gw1, gw2))


def test_reproduces_the_notebook():
    got = metrics(RunConfig(d=256, batch=64, small_init=1e-4, seed=123))
    for block, expected in NOTEBOOK.items():
        for name, value in expected.items():
            assert got[block][name] == pytest.approx(value, rel=1e-5), (block, name)


@pytest.mark.parametrize("config", [
    RunConfig(d=8, batch=3, small_init=0.5, seed=0),
    RunConfig(d=33, batch=7, small_init=1e-2, seed=5),
    RunConfig(d=64, batch=16, small_init=1e-3, seed=42),
    RunConfig(d=5, batch=1, small_init=1.0, seed=7),
])
@pytest.mark.parametrize("block", BOTH)
def test_hook_and_every_metric_equal_autograd(config, block):
    got = metrics(config, (block,))[block]
    want = reference(config, block)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-5), name


def test_blocks_of_one_configuration_see_the_same_x_and_weights():
    got = metrics(RunConfig(d=16, batch=4, small_init=0.1, seed=3))
    assert got["plain"]["w_norm"] == got["residual"]["w_norm"]
    # a block run alone draws the same numbers as when it runs beside the other
    alone = metrics(RunConfig(d=16, batch=4, small_init=0.1, seed=3), ("residual",))
    assert alone["residual"] == got["residual"]


def test_plain_block_scales_as_relu_homogeneity_says():
    """Weights times c: a1 scales by c, out by c^2, so loss and x grad by c^4, a1 and weight grads by c^3."""
    c = 10.0
    small = metrics(RunConfig(d=32, batch=8, small_init=1e-3, seed=1), ("plain",))["plain"]
    large = metrics(RunConfig(d=32, batch=8, small_init=1e-2, seed=1), ("plain",))["plain"]
    powers = dict(loss=4, x_grad_norm=4, a1_grad_norm=3, param_grad_norm=3, w_norm=1)
    for name, power in powers.items():
        assert large[name] / small[name] == pytest.approx(c**power, rel=1e-4), name


def test_residual_input_gradient_tends_to_the_identity_path():
    """As small_init -> 0, out -> x and d mean(out^2)/dx -> 2x/(batch d)."""
    config = RunConfig(d=48, batch=12, small_init=1e-8, seed=9)
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d).double()
    limit = 2 * x.norm().item() / (config.batch * config.d)
    assert metrics(config, ("residual",))["residual"]["x_grad_norm"] == pytest.approx(limit, rel=1e-6)
    # and at the notebook's setting it is close to 2/sqrt(batch d), since ||x|| ~ sqrt(batch d)
    assert NOTEBOOK["residual"]["x_grad_norm"] == pytest.approx(2 / math.sqrt(64 * 256), rel=0.01)


def test_zero_init_gives_zero_plain_gradients():
    got = metrics(RunConfig(d=8, batch=2, small_init=0.0, seed=0))
    assert got["plain"]["x_grad_norm"] == 0.0 and got["plain"]["w_norm"] == 0.0
    assert got["residual"]["loss"] > 0

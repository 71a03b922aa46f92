"""cnnexp.theory: every derived law holds on real runs of the study's code (float64), measured per seed with
numpy.polyfit; exact laws to 1e-6, limits within LIMIT_TOLERANCE near small_init -> 0; and where no law is
claimed (tanh), the runs indeed break the relu exponents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnexp import theory
from cnnexp.config import RunConfig
from cnnexp.engine.reference import probe
from cnnexp.schema import BLOCKS, LAYER_METRICS

SCALE = ("loss", "x_grad_norm", "a1_grad_norm", "param_grad_norm", "w_norm")
SEEDS = (0, 1, 2)


def slopes(block, inits, depth=1, activation="relu", alpha_init=0.0, seed=0, d=8, batch=4):
    """Per metric, the log-log slope over `inits` of one seed's runs (numpy.polyfit, degree 1)."""
    rows = [probe(RunConfig(d=d, batch=batch, small_init=c, seed=seed, depth=depth, activation=activation,
                            dtype="float64", alpha_init=alpha_init), (block,))[0].metrics for c in inits]
    return {m: np.polyfit(np.log10(inits), np.log10([r[m] for r in rows]), 1)[0]
            for m in SCALE if all(r[m] > 0 for r in rows)}


def config(depth=1, activation="relu", alpha_init=0.0):
    return {"depth": depth, "activation": activation, "alpha_init": alpha_init}


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_plain_relu_exponents_are_exact_at_every_depth(depth, seed):
    # far from 0 on purpose: an exact law holds at any scale, not only in a limit
    measured = slopes("plain", [1e-2, 0.3, 2.0], depth=depth, seed=seed)
    for m in SCALE:
        law = theory.law("plain", m, "small_init", "power", config(depth))
        assert law.kind == "exact" and law.value == {"loss": 4 * depth, "x_grad_norm": 4 * depth,
                                                     "a1_grad_norm": 4 * depth - 1,
                                                     "param_grad_norm": 4 * depth - 1, "w_norm": 1}[m]
        assert abs(measured[m] - law.value) < 1e-6, (m, measured[m], law.value)


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_no_plain_law_for_activations_that_are_not_homogeneous(activation):
    assert all(theory.law("plain", m, "small_init", "power", config(1, activation)) is None for m in SCALE)
    # and rightly so: at moderate scales the relu exponents fail by far more than rounding
    measured = slopes("plain", [0.3, 1.0, 3.0], activation=activation)
    assert abs(measured["loss"] - 4) > 1e-2


@pytest.mark.parametrize("block", ["residual", "prenorm"])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_identity_path_blocks_tend_to_their_limits(block, depth, activation):
    measured = slopes(block, [1e-4, 1e-3, 1e-2], depth=depth, activation=activation, seed=1)
    for m in SCALE:
        law = theory.law(block, m, "small_init", "power", config(depth, activation))
        assert law.kind in ("limit", "exact") and abs(measured[m] - law.value) < law.tolerance, (m, measured[m])
    # and the limit is a limit: far from 0 the slope is off (x + F(x) is not homogeneous)
    far = slopes(block, [0.3, 1.0, 3.0], depth=depth, activation=activation, seed=1)
    assert abs(far["x_grad_norm"]) > theory.LIMIT_TOLERANCE


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_rezero_at_alpha_0_is_exactly_the_identity(depth, seed):
    inits = [1e-2, 0.3, 2.0]
    measured = slopes("rezero", inits, depth=depth, seed=seed)
    for m in ("loss", "x_grad_norm", "param_grad_norm", "w_norm"):
        law = theory.law("rezero", m, "small_init", "power", config(depth))
        assert law.kind == "exact" and abs(measured[m] - law.value) < 1e-6, (m, measured[m], law.value)
    assert "a1_grad_norm" not in measured  # exactly 0: no law, every value left out by a fit
    assert theory.law("rezero", "a1_grad_norm", "small_init", "power", config(depth)) is None
    assert theory.vanishes("rezero", "a1_grad_norm", config(depth))
    assert not theory.vanishes("residual", "a1_grad_norm", {})
    assert not theory.vanishes("rezero", "a1_grad_norm", config(depth, alpha_init=0.5))
    # in depth too: the identity at every depth
    assert theory.law("rezero", "x_grad_norm", "depth", "exponential", config()).value == 0


def test_rezero_with_a_nonzero_gate_tends_to_the_residual_limits_but_keeps_its_weight_norm():
    measured = slopes("rezero", [1e-4, 1e-3, 1e-2], alpha_init=0.5, seed=2)
    for m in SCALE:
        law = theory.law("rezero", m, "small_init", "power", config(1, alpha_init=0.5))
        assert law.kind == "limit" and abs(measured[m] - law.value) < law.tolerance, (m, measured[m])
    assert theory.law("rezero", "w_norm", "small_init", "power", config(1, alpha_init=0.5)).value == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_input_gradient_limit_is_autograds_gradient_of_the_identity_network(seed):
    # independent: d mean(x**2) / dx by torch autograd on the probe's own x
    torch.manual_seed(seed)
    x = torch.randn(4, 8, dtype=torch.float32).double().requires_grad_(True)
    x.pow(2).mean().backward()
    limit = theory.x_grad_limit(float(x.detach().norm()), batch=4, d=8)
    assert limit == pytest.approx(float(x.grad.norm()), rel=1e-12)
    [rezero] = probe(RunConfig(d=8, batch=4, small_init=0.5, seed=seed, dtype="float64", depth=2), ("rezero",))
    assert rezero.metrics["x_grad_norm"] == pytest.approx(limit, rel=1e-12)
    [residual] = probe(RunConfig(d=8, batch=4, small_init=1e-4, seed=seed, dtype="float64"), ("residual",))
    assert residual.metrics["x_grad_norm"] / limit == pytest.approx(1, abs=1e-6)
    assert all(theory.has_x_grad_limit(b) == (b != "plain") for b in BLOCKS)


@pytest.mark.parametrize("seed", SEEDS)
def test_plain_per_layer_exponents_are_exact(seed):
    depth, inits = 3, [1e-2, 0.3, 2.0]
    runs = [probe(RunConfig(d=8, batch=4, small_init=c, seed=seed, depth=depth, dtype="float64"), ("plain",))[0]
            for c in inits]
    for k in range(depth):
        for m in LAYER_METRICS:
            measured = np.polyfit(np.log10(inits), np.log10([r.layers[k][m] for r in runs]), 1)[0]
            law = theory.law("plain", m, "small_init", "power", {**config(depth), "block_index": k})
            assert law.kind == "exact" and abs(measured - law.value) < 1e-6, (k, m, measured, law.value)
        at_block = {**config(depth), "block_index": k}
        assert theory.law("residual", "a1_grad_norm", "small_init", "power", at_block) is None
    # block 0's a1 gradient is the results file's a1_grad_norm: the same exponent, 4L - 1
    assert theory.law("plain", "a1_grad_norm", "small_init", "power", {**config(depth), "block_index": 0}).value == 11


def test_no_law_where_none_is_derived():
    assert theory.law("plain", "x_grad_norm", "d", "power", config()) is None
    assert theory.law("plain", "x_grad_norm", "batch", "power", config()) is None
    assert theory.law("plain", "x_grad_norm", "depth", "exponential", config()) is None
    assert theory.law("plain", "x_grad_norm", "small_init", "exponential", config()) is None
    assert theory.law("plain", "cos_x_out", "small_init", "power", config()) is None
    # a file without depth/activation/alpha_init columns gets the schema defaults
    assert theory.law("plain", "loss", "small_init", "power", {}).value == 4


# ----------------------------------------------------------------------------------------------------------
# Whole networks: the homogeneity rule, against the engine's own numbers at two scales

def _net(layers, input="3x8x8"):
    from cnnexp.nets import net_from_items

    return net_from_items("n", input, layers)


@pytest.mark.parametrize("layers, skips, k", [
    (["conv:out=4,k=3,bias=false", "relu", "maxpool:k=2", "flatten", "linear:out=2,bias=false"], True, 2),
    ([{"residual": ["conv:out=3,k=3,p=1,bias=false", "relu", "conv:out=3,k=3,p=1,bias=false"]}], False, 2),
    ([{"residual": ["conv:out=3,k=3,p=1,bias=false", "relu", "conv:out=3,k=3,p=1,bias=false"]}], True, None),
    ([{"residual": ["conv:out=3,k=1,bias=false"], "shortcut": ["conv:out=3,k=1,bias=false"]}], True, 1),
    (["conv:out=4,k=3"], True, None),  # a bias
    (["conv:out=4,k=3,bias=false", "tanh"], True, None),
    (["conv:out=4,k=3,bias=false", "bn"], True, None),
    ([{"repeat": 3, "layers": ["conv:out=3,k=3,p=1,bias=false", "leakyrelu", "dropout"]}, "upsample:scale=2",
      "adaptiveavgpool:out=2", "avgpool:k=2", "flatten", "linear:out=2,bias=false"], True, 4),
])
def test_the_degree_of_a_network_is_its_weighted_layers_on_every_path(layers, skips, k):
    from cnnexp.nets import lay_out

    net = _net(layers)
    assert theory.homogeneous_degree(lay_out(net.items, net.input, skips=skips)) == k


@pytest.mark.parametrize("layers", [
    ["conv:out=4,k=3,p=1,bias=false", "relu", {"residual": ["conv:out=4,k=3,p=1,bias=false", "relu",
                                                             "conv:out=4,k=3,p=1,bias=false"]},
     "maxpool:k=2", "flatten", "linear:out=3,bias=false"],
    [{"repeat": 2, "layers": ["conv:out=3,k=3,p=1,bias=false", "leakyrelu"]}, "avgpool:k=2", "flatten",
     "linear:out=2,bias=false"],
])
def test_net_law_is_what_the_engine_computes_at_two_scales(layers):
    """out(c V) = c^k out(V): every metric's ratio between two scales is their ratio to the law's power."""
    from cnnexp.engine.net import probe_net
    from cnnexp.nets import net_file

    net = _net(layers)
    c1, c2 = 0.5, 0.0625  # powers of two: c * draw is exact in float32, so the law holds to float64 rounding
    for block in ("plain", "residual"):
        config = {"net": str(net), "init": "small", "bn": "on"}
        low, high = (probe_net(RunConfig(net=net, batch=3, seed=1, small_init=c, dtype="float64"), (block,))[0]
                     for c in (c2, c1))
        for metric in ("loss", "x_grad_norm", "param_grad_norm", "w_norm"):
            law = theory.net_law(block, metric, "small_init", "power", config, net_file(net))
            if law is None:
                assert block == "residual"  # (the identity path is shorter than the branch)
                continue
            ratio = high.metrics[metric] / low.metrics[metric]
            assert ratio == pytest.approx((c1 / c2) ** law.value, rel=1e-9), (block, metric)


def test_net_law_is_none_for_other_inits_axes_and_unknown_networks():
    from cnnexp.nets import net_file

    net = _net(["conv:out=4,k=3,bias=false"])
    config = {"net": "n", "init": "small", "bn": "off"}
    assert theory.net_law("plain", "loss", "small_init", "power", config, net_file(net)).value == 2
    assert theory.net_law("plain", "loss", "small_init", "power", {**config, "init": "kaiming"}, net_file(net)) is None
    assert theory.net_law("plain", "loss", "batch", "power", config, net_file(net)) is None
    assert theory.net_law("plain", "loss", "small_init", "power", config, None) is None

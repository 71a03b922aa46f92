"""The reference engine (the probe, cnnexp/engine/reference.py) against the notebook's published numbers and an
independent torch.autograd computation; run_reference yields every task's blocks, in order, equal to probing them."""
import math

import pytest
import torch

from cnnexp.config import RunConfig
from cnnexp.engine import use_threads
from cnnexp.engine.reference import probe, run_reference

BOTH = ("plain", "residual")

# Printed by the notebook for d=256, batch=64, small_init=1e-4, seed=123 (6 significant digits).
NOTEBOOK = {
    "plain": dict(loss=3.3215e-12, x_grad_norm=1.02284e-13, a1_grad_norm=5.57527e-11, w_norm=0.0362999,
                  param_grad_norm=1.71966e-09),
    "residual": dict(loss=1.00448, x_grad_norm=0.0156599, a1_grad_norm=1.75803e-05, w_norm=0.0362999,
                     param_grad_norm=0.000428953),
}


def oracle_norm(*tensors) -> float:
    """The L2 norm by Python's math.hypot, which scales its arguments: no underflow, no overflow."""
    return math.hypot(*(v for t in tensors for v in t.detach().double().flatten().tolist()))


def oracle_cosine(a, b) -> float:
    """The true cosine, from Python floats scaled by their largest magnitude (NaN for a zero vector)."""
    a, b = a.detach().double().flatten().tolist(), b.detach().double().flatten().tolist()
    sa, sb = max(map(abs, a)), max(map(abs, b))
    if sa == 0 or sb == 0:
        return math.nan
    a, b = [v / sa for v in a], [v / sb for v in b]
    return max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))))


def oracle_loss(out) -> float:
    return (oracle_norm(out) / math.sqrt(out.numel())) ** 2


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
    norm = oracle_norm
    return dict(loss=oracle_loss(out), x_grad_norm=norm(gx), a1_grad_norm=norm(ga1), w_norm=norm(w1, w2),
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


# --- depth, variants, dtype, per-layer gradients, cos_x_out -----------------------------------------

ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}


def reference_stack(config, block: str):
    """A depth-L stack computed by hand: explicit matrices, torch.autograd.grad at every block, norms and the
    cosine by Python's math. Returns (metrics, per-layer metrics)."""
    torch.manual_seed(config.seed)
    x32 = torch.randn(config.batch, config.d)
    w32 = [config.small_init * torch.randn(config.d, config.d) for _ in range(2 * config.depth)]
    dtype = {"float32": torch.float32, "float64": torch.float64}[config.dtype]
    x = x32.to(dtype).requires_grad_()
    ws = [w.to(dtype).requires_grad_() for w in w32]
    alphas = [torch.tensor(config.alpha_init).to(dtype).requires_grad_() for _ in range(config.depth)]
    act = ACT[config.activation]
    h, a1s, outs = x, [], []
    for i in range(config.depth):
        w1, w2 = ws[2 * i], ws[2 * i + 1]
        inp = torch.nn.functional.layer_norm(h, (config.d,)) if block == "prenorm" else h
        a1 = inp @ w1.T
        f = act(a1) @ w2.T
        h = {"plain": f, "residual": h + f, "prenorm": h + f, "rezero": h + alphas[i] * f}[block]
        a1s.append(a1)
        outs.append(h)
    loss = h.pow(2).mean()
    params = ws + (alphas if block == "rezero" else [])
    grads = torch.autograd.grad(loss, [x, *a1s, *outs, *params])
    gx, ga1, gout, gp = grads[0], grads[1:1 + config.depth], grads[1 + config.depth:1 + 2 * config.depth], \
        grads[1 + 2 * config.depth:]
    norm = oracle_norm
    metrics = dict(loss=oracle_loss(h), x_grad_norm=norm(gx), a1_grad_norm=norm(ga1[0]), w_norm=norm(*params),
                   param_grad_norm=norm(*gp), cos_x_out=oracle_cosine(gx, gout[-1]))
    layers = [dict(a1_grad_norm=norm(ga1[i]), fc1_grad_norm=norm(gp[2 * i]), fc2_grad_norm=norm(gp[2 * i + 1]),
                   out_grad_norm=norm(gout[i])) for i in range(config.depth)]
    return metrics, layers


def assert_matches(got, want, rel=1e-5):
    for name in want:
        tolerance = dict(abs=1e-6) if name == "cos_x_out" else dict(rel=rel, abs=0.0)
        assert got[name] == pytest.approx(want[name], nan_ok=True, **tolerance), name


@pytest.mark.parametrize("config", [
    RunConfig(d=16, batch=4, small_init=0.3, seed=1, depth=3),
    RunConfig(d=24, batch=6, small_init=1e-2, seed=2, depth=7, dtype="float64"),
    RunConfig(d=12, batch=5, small_init=0.2, seed=3, depth=4, activation="tanh"),
    RunConfig(d=12, batch=5, small_init=0.2, seed=4, depth=2, activation="gelu", alpha_init=0.3),
    # the squares of these gradients underflow: float32 at 1e-6, float64 at depth 50 (elements near 1e-237)
    RunConfig(d=16, batch=4, small_init=1e-6, seed=6),
    RunConfig(d=8, batch=3, small_init=1e-2, seed=7, depth=50, dtype="float64"),
])
@pytest.mark.parametrize("block", ["plain", "residual", "rezero", "prenorm"])
def test_stacks_and_every_layer_equal_autograd(config, block):
    [result] = probe(config, (block,))
    want, want_layers = reference_stack(config, block)
    assert_matches(result.metrics, want)
    assert len(result.layers) == config.depth
    for got_layer, want_layer in zip(result.layers, want_layers):
        assert_matches(got_layer, want_layer)


def test_depth_one_is_the_one_block_study_exactly():
    config = RunConfig(d=256, batch=64, small_init=1e-4, seed=123, depth=1)
    got = metrics(config)
    for block, expected in NOTEBOOK.items():
        for name, value in expected.items():
            assert got[block][name] == pytest.approx(value, rel=1e-5)
        assert got[block].keys() == reference_stack(config, block)[0].keys()
    for block in BOTH:
        for name, value in reference(config, block).items():
            assert got[block][name] == pytest.approx(value, rel=1e-6)


def test_plain_gradient_falls_with_depth_while_residual_holds():
    depths = [1, 2, 3, 5, 8, 12]
    runs = {L: metrics(RunConfig(d=32, batch=8, small_init=0.05, seed=0, depth=L, dtype="float64")) for L in depths}
    plain = [runs[L]["plain"]["x_grad_norm"] for L in depths]
    residual = [runs[L]["residual"]["x_grad_norm"] for L in depths]
    assert all(a > b for a, b in zip(plain, plain[1:]))
    assert all(0.5 < r / residual[0] < 2 for r in residual)


def test_rezero_at_alpha_zero_is_exactly_the_identity_path():
    config = RunConfig(d=16, batch=4, small_init=0.5, seed=8, depth=5)
    [rezero] = probe(config, ("rezero",))
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, config.d, requires_grad=True)
    x.pow(2).mean().backward()  # the network is the identity: out = x
    assert rezero.metrics["x_grad_norm"] == pytest.approx(oracle_norm(x.grad), rel=1e-6)
    assert rezero.metrics["cos_x_out"] == pytest.approx(1.0, abs=1e-6)
    assert all(layer["fc1_grad_norm"] == 0 and layer["fc2_grad_norm"] == 0 for layer in rezero.layers)
    # x and the weights are the residual run's
    [residual] = probe(config, ("residual",))
    assert rezero.metrics["w_norm"] == pytest.approx(residual.metrics["w_norm"], rel=1e-14)  # alpha adds 0


def test_float64_starts_from_the_float32_numbers_and_sees_below_float32():
    f32 = metrics(RunConfig(d=64, batch=16, small_init=1e-4, seed=5), ("plain",))["plain"]
    f64 = metrics(RunConfig(d=64, batch=16, small_init=1e-4, seed=5, dtype="float64"), ("plain",))["plain"]
    assert f64["w_norm"] == pytest.approx(f32["w_norm"], rel=1e-6)
    assert f64["x_grad_norm"] == pytest.approx(f32["x_grad_norm"], rel=1e-4)
    # at 1e-6 the c^4 law holds in float64, where float32's norm has underflowed
    tiny = metrics(RunConfig(d=64, batch=16, small_init=1e-6, seed=5, dtype="float64"), ("plain",))["plain"]
    assert tiny["x_grad_norm"] == pytest.approx(f64["x_grad_norm"] * 1e-8, rel=1e-9)


def test_layer_rows_are_tidy():
    [result] = probe(RunConfig(d=4, batch=2, depth=3), ("plain",))
    rows = result.layer_rows()
    assert [r["block_index"] for r in rows] == [0, 1, 2]
    assert rows[0]["a1_grad_norm"] == result.metrics["a1_grad_norm"]
    assert rows[0]["depth"] == 3 and rows[0]["block"] == "plain"



def test_run_reference_yields_each_tasks_blocks_in_order():
    tasks = [(RunConfig(d=4, batch=2, seed=1), ("plain", "residual")), (RunConfig(d=4, batch=2, seed=2), ("residual",))]
    got = [(r.config.seed, r.block, r.metrics) for r in run_reference(tasks)]
    want = [(c.seed, r.block, r.metrics) for c, blocks in tasks for r in probe(c, blocks)]
    assert got == want


def test_use_threads_sets_and_reports_the_count():
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 == torch.get_num_threads()
        assert use_threads(None) == 1  # None keeps what is in force
    finally:
        torch.set_num_threads(before)

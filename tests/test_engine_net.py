"""The engine of whole networks against the definition (docs/nets.md) written out by hand in plain torch, the
notebook's block as a network against the study, and build_net's modules against a torchvision-style ResNet
loaded by order."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnexp.config import RunConfig
from cnnexp.engine.net import build_net, channel_stats, probe_net
from cnnexp.engine.reference import probe
from cnnexp.nets import load_net, net_from_items

# A CIFAR-style residual network with a projection shortcut, a conv with a bias, a pool and a flat head.
LAYERS = [
    "conv:out=4,k=3,p=1",
    "bn",
    "relu",
    {"residual": ["conv:out=8,k=3,s=2,p=1,bias=false", "bn", "relu", "conv:out=8,k=3,p=1,bias=false", "bn"],
     "shortcut": ["conv:out=8,k=1,s=2,bias=false", "bn"]},
    "relu",
    "maxpool:k=2",
    "flatten",
    "linear:out=5",
]
NET = net_from_items("hidden", "3x8x8", LAYERS)
# (shape, fan_in, fan_out) of every drawn tensor in file order; None: a bias
DRAWN = [((4, 3, 3, 3), 27, 36), ((4,), None, None), ((8, 4, 3, 3), 36, 72), ((8, 8, 3, 3), 72, 72),
         ((8, 4, 1, 1), 4, 8), ((5, 32), 32, 5), ((5,), None, None)]
PATHS = ["1", "2", "3", "4.residual.1", "4.residual.2", "4.residual.3", "4.residual.4", "4.residual.5",
         "4.shortcut.1", "4.shortcut.2", "4", "5", "6", "7", "8"]


def by_hand(config: RunConfig, skips: bool):
    """The definition, step by step: returns (metrics, {path: row})."""
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    x = torch.randn(config.batch, 3, 8, 8)
    drawn = []
    for shape, fan_in, fan_out in DRAWN:
        r = torch.randn(shape)
        if config.init == "small":
            s = config.small_init
        elif fan_in is None:
            s = 0.0
        else:
            s = math.sqrt(2 / fan_in) if config.init == "kaiming" else math.sqrt(2 / (fan_in + fan_out))
        drawn.append(torch.tensor(s, dtype=torch.float32) * r)  # the scale rounded to float32, as torch does
    c1w, c1b, b1w, b2w, scw, fcw, fcb = (t.to(dtype).requires_grad_() for t in drawn)
    bn = config.bn == "on"
    norms = {p: [torch.ones(c, dtype=dtype, requires_grad=True), torch.zeros(c, dtype=dtype, requires_grad=True)]
             for p, c in (("2", 4), ("4.residual.2", 8), ("4.residual.5", 8), ("4.shortcut.2", 8))}
    if config.zero_residual:
        norms["4.residual.5"][0] = torch.zeros(8, dtype=dtype, requires_grad=True)
    x = x.to(dtype).requires_grad_()
    rows = {}

    def keep(path, t, branch=None):
        t.retain_grad()
        rows[path] = (t, branch)
        return t

    def batch_norm(path, t):
        w, b = norms[path]
        return keep(path, F.batch_norm(t, None, None, w, b, training=True, eps=1e-5)) if bn else t

    h = keep("1", F.conv2d(x, c1w, c1b, padding=1))
    h = batch_norm("2", h)
    h = keep("3", F.relu(h))
    a = keep("4.residual.1", F.conv2d(h, b1w, stride=2, padding=1))
    a = batch_norm("4.residual.2", a)
    a = keep("4.residual.3", F.relu(a))
    a = keep("4.residual.4", F.conv2d(a, b2w, padding=1))
    a = batch_norm("4.residual.5", a)
    if skips:
        s = keep("4.shortcut.1", F.conv2d(h, scw, stride=2))
        s = batch_norm("4.shortcut.2", s)
        out = keep("4", a + s, branch=a)
    else:
        out = keep("4", a, branch=a)
    out = keep("5", F.relu(out))
    out = keep("6", F.max_pool2d(out, 2))
    out = keep("7", out.flatten(1))
    out = keep("8", F.linear(out, fcw, fcb))
    loss = out.pow(2).mean()
    loss.backward()

    layer_params = {"1": [c1w, c1b], "4.residual.1": [b1w], "4.residual.4": [b2w], "4.shortcut.1": [scw],
                    "8": [fcw, fcb], **(norms if bn else {})}
    if not skips:
        layer_params = {p: v for p, v in layer_params.items() if not p.startswith("4.shortcut")}
    params = [p for ps in layer_params.values() for p in ps]

    def n(*ts):
        return math.sqrt(sum(float(t.detach().double().square().sum()) for t in ts))

    metrics = {"loss": float(out.detach().double().square().mean()), "x_grad_norm": n(x.grad),
               "w_norm": n(*params), "param_grad_norm": n(*(p.grad for p in params))}
    table = {}
    for path, (t, branch) in rows.items():
        u = t.detach().double()
        u = u if u.ndim > 2 else u[:, :, None]
        mean = u.mean(dim=(0, *range(2, u.ndim)), keepdim=True)
        row = {"act_sq_mean": float(mean.square().mean()), "act_var": float((u - mean).square().mean()),
               "out_grad_norm": n(t.grad), "weight_norm": None, "weight_grad_norm": None, "branch_var": None}
        if path in layer_params:
            row["weight_norm"] = n(*layer_params[path])
            row["weight_grad_norm"] = n(*(p.grad for p in layer_params[path]))
        if branch is not None:
            b = branch.detach().double()
            bm = b.mean(dim=(0, 2, 3), keepdim=True)
            row["branch_var"] = float((b - bm).square().mean())
        table[path] = row
    return metrics, table


def close(a, b, rel):
    if a is None or b is None:
        return a is b
    return a == pytest.approx(b, rel=rel, abs=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", ["small", "kaiming", "xavier"])
@pytest.mark.parametrize("bn", ["on", "off"])
@pytest.mark.parametrize("zero_residual", [False, True])
def test_every_metric_and_layer_row_is_the_definition(dtype, init, bn, zero_residual):
    config = RunConfig(net=NET, batch=3, seed=7, init=init, small_init=0.3 if init == "small" else None, bn=bn,
                       zero_residual=zero_residual, dtype=dtype)
    rel = 1e-5 if dtype == "float32" else 1e-9
    for result in probe_net(config, ("plain", "residual")):
        metrics, table = by_hand(config, skips=result.block == "residual")
        for name, value in metrics.items():
            assert close(result.metrics[name], value, rel), (result.block, name)
        expected = [p for p in PATHS if (bn == "on" or p not in ("2", "4.residual.2", "4.residual.5", "4.shortcut.2"))
                    and (result.block == "residual" or not p.startswith("4.shortcut"))]
        assert [row["path"] for row in result.layers] == expected
        for row in result.layers:
            want = table[row["path"]]
            for name, value in want.items():
                if name in ("act_sq_mean", "act_var"):  # zero in theory (a mean after bn, the variance of a
                    # constant): rounding noise, held to the second moment they are parts of
                    second = want["act_sq_mean"] + want["act_var"]
                    assert row[name] == pytest.approx(value, rel=rel, abs=rel * second), (row["path"], name)
                    continue
                assert close(row[name], value, rel), (result.block, row["path"], name)


def test_the_notebooks_block_as_a_network_gives_the_studys_rows():
    net = load_net("seed_block")
    for dtype in ("float32", "float64"):
        config = dict(batch=16, small_init=1e-3, seed=5, dtype=dtype)
        ours = probe_net(RunConfig(net=net, **config), ("plain", "residual"))
        study = probe(RunConfig(d=256, **config), ("plain", "residual"))
        for a, b in zip(ours, study, strict=True):
            assert a.block == b.block
            for name in ("loss", "x_grad_norm", "w_norm", "param_grad_norm"):
                assert a.metrics[name] == pytest.approx(b.metrics[name], rel=1e-6, abs=0)


def test_kaiming_and_xavier_leave_small_init_alone_and_draw_every_bias():
    """Biases are drawn (and scaled by 0) under kaiming, so the stream advances as under small: the weight after
    a biased layer is the same random numbers under either init, scaled differently."""
    net = net_from_items("two", "6", ["linear:out=6", "linear:out=6,bias=false"])
    small = build_net(net)
    kaiming = build_net(net)
    from cnnexp.engine.net import draw

    torch.manual_seed(0)
    draw(small, RunConfig(net=net, small_init=1.0))
    torch.manual_seed(0)
    draw(kaiming, RunConfig(net=net, init="kaiming", small_init=None))
    w_small, b_small, w2_small = small.parameters()
    w_kaiming, b_kaiming, w2_kaiming = kaiming.parameters()
    assert torch.equal(b_kaiming, torch.zeros(6))
    assert torch.allclose(w2_kaiming, w2_small * math.sqrt(2 / 6), rtol=1e-6, atol=0)


def test_channel_stats_do_not_underflow():
    t = (1e-24 * torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))).float()
    sq_mean, var = channel_stats(t)
    u = t.double()
    mean = u.mean(dim=(0, 2, 3), keepdim=True)
    assert var > 0 and var == pytest.approx(float((u - mean).square().mean()), rel=1e-12)
    assert sq_mean == pytest.approx(float(mean.square().mean()), rel=1e-12)
    assert float(t.var(dim=(0, 2, 3), unbiased=False).mean()) == 0.0  # what float32 would have said


class BasicBlock(nn.Module):
    """torchvision's ResNet block, written out as torchvision writes it (models/resnet.py)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def test_build_net_loads_a_torchvision_style_resnet_by_order():
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                              nn.MaxPool2d(3, 2, 1), BasicBlock(8, 8, 1), BasicBlock(8, 16, 2),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for m in reference.modules():  # buffers that are not their defaults, so loading them is tested too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net = build_net(net_from_items("resnet", "3x32x32", [
        "conv:out=8,k=7,s=2,p=3,bias=false", "bn", "relu", "maxpool:k=3,s=2,p=1",
        {"residual": ["conv:out=8,k=3,p=1,bias=false", "bn", "relu", "conv:out=8,k=3,p=1,bias=false", "bn"]},
        "relu",
        {"residual": ["conv:out=16,k=3,s=2,p=1,bias=false", "bn", "relu", "conv:out=16,k=3,p=1,bias=false", "bn"],
         "shortcut": ["conv:out=16,k=1,s=2,bias=false", "bn"]},
        "relu", "adaptiveavgpool:out=1", "flatten", "linear:out=10"]))
    theirs = list(reference.state_dict().values())
    ours = net.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs]
    net.load_state_dict(dict(zip(ours, theirs, strict=True)))
    reference.eval()
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = reference(xa), net(xb)
    a.pow(2).mean().backward()
    b.pow(2).mean().backward()
    assert torch.allclose(b, a, rtol=1e-5, atol=0)
    assert torch.allclose(xb.grad, xa.grad, rtol=1e-5, atol=1e-12)


def test_the_shipped_resnet18_has_torchvisions_parameters_in_order():
    net = build_net("resnet18")
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert sum(p.numel() for p in net.parameters()) == 11_689_512
    assert shapes[:3] == [(64, 3, 7, 7), (64,), (64,)] and shapes[-2:] == [(1000, 512), (1000,)]
    # layer2's first block: conv1, bn1, conv2, bn2, then the downsample's conv and bn (torchvision's order)
    assert shapes[15:21] == [(128, 64, 3, 3), (128,), (128,), (128, 128, 3, 3), (128,), (128,)]
    assert shapes[21:24] == [(128, 64, 1, 1), (128,), (128,)]
    assert len(list(net.buffers())) == 3 * 20  # running mean, running variance, batches tracked per bn


def test_channel_stats_of_tiny_float64_outputs_are_scaled_and_exact():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64)
    sq_mean, var = channel_stats(1e-152 * base)  # below 1e-150: the scaled path
    want_sq, want_var = channel_stats(base)
    assert var == pytest.approx(want_var * 1e-304, rel=1e-12) and sq_mean == pytest.approx(want_sq * 1e-304, rel=1e-12)

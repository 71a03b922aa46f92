"""cnnexp.shapes against PyTorch itself: real modules on random chains, autograd for receptive fields,
torch's flop counter for MACs. Expected values always come from torch, never from cnnexp."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from cnnexp.errors import CnnexpError, ConfigError, ShapeError
from cnnexp.shapes import INT64_MAX, chain_shape, load_chain, parse_int, parse_layer, shape_from_flags, single_conv

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ random chains for torch


def _text(value) -> str:
    return str(value) if isinstance(value, int) else f"{value[0]}x{value[1]}"


def rarely(draw, usual, odd, odds: int):
    """Mostly a value from `usual`; one time in `odds` one from `odd`, to probe what torch refuses."""
    return draw(odd if draw(st.integers(1, odds)) == 1 else usual)


@st.composite
def geometry(draw, low: int, high: int, odds: int):
    """An int in [low, high] (rarely just below it), now and then a (height, width) pair."""
    one = st.integers(low, high)
    odd = st.integers(low - 2, low - 1)
    if draw(st.integers(0, 3)) == 0:
        return rarely(draw, one, odd, odds), rarely(draw, one, odd, odds)
    return rarely(draw, one, odd, odds)


def _pool_padding(draw, k, odds: int):
    """Mostly within PyTorch's limit k//2 on each axis, sometimes over it."""
    kh, kw = (k, k) if isinstance(k, int) else k
    p = tuple(rarely(draw, st.integers(0, max(k // 2, 0)), st.integers(max(k // 2, 0), k // 2 + 3), odds)
              for k in (kh, kw))
    return p[0] if p[0] == p[1] else p


@st.composite
def layers(draw, channels: int, odds: int):
    """A layer as (spec text, torch module, output channels), both built from the same drawn values."""
    kind = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool", "convT", "other"]))
    if kind == "other":
        return draw(simple_layers(channels, odds))
    k = draw(geometry(1, 5, odds))
    keys = {"k": _text(k)}
    kw = {"kernel_size": k}
    if draw(st.booleans()):
        kw["stride"] = draw(geometry(1, 3, odds))
        keys["s"] = _text(kw["stride"])
    if kind == "conv" and draw(st.integers(0, 5)) == 0:
        kw["padding"], keys["p"] = "same", "same"
    elif draw(st.booleans()):
        kw["padding"] = draw(geometry(0, 3, odds)) if kind in ("conv", "convT") else _pool_padding(draw, k, odds)
        keys["p"] = _text(kw["padding"])
    if kind in ("conv", "maxpool", "convT") and draw(st.booleans()):
        kw["dilation"] = draw(geometry(1, 3, odds))
        keys["d"] = _text(kw["dilation"])
    if kind in ("maxpool", "avgpool") and draw(st.booleans()):
        kw["ceil_mode"] = True
        keys["ceil"] = "true"
    out = channels
    if kind in ("conv", "convT"):
        out = rarely(draw, st.integers(1, 6), st.just(0), odds)
        keys = {"out": str(out), **keys}
        kw.update(in_channels=channels, out_channels=out)
        if draw(st.integers(0, 3)) == 0:
            divisors = [g for g in range(1, 7) if channels % g == 0 and out % g == 0]
            kw["groups"] = rarely(draw, st.sampled_from(divisors or [1]), st.integers(0, 4), odds)
            keys["groups"] = str(kw["groups"])
        if draw(st.integers(0, 3)) == 0:
            kw["bias"] = False
            keys["bias"] = "false"
    if kind == "convT" and draw(st.booleans()):
        kw["output_padding"] = draw(geometry(0, 2, odds))
        keys["op"] = _text(kw["output_padding"])
    # A backend quirk, not a rule: torch refuses dilation 0, except that a grouped ConvTranspose2d runs on
    # oneDNN, which lets it through when that axis's kernel is 1 (and fails with an internal error when it is
    # larger). cnnexp refuses dilation 0 always; that one case is left out of the comparison.
    dilation = kw.get("dilation", 1)
    assume(not (kind == "convT" and kw.get("groups", 1) > 1 and 0 in (dilation if isinstance(dilation, tuple)
                                                                        else (dilation,))))
    spec = f"{kind}:" + ",".join(f"{key}={value}" for key, value in keys.items())
    module = {"conv": nn.Conv2d, "maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d, "convT": nn.ConvTranspose2d}
    return spec, lambda: module[kind](**kw), out


ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
               "silu": nn.SiLU, "hardswish": nn.Hardswish, "leakyrelu": nn.LeakyReLU, "identity": nn.Identity}


@st.composite
def simple_layers(draw, channels: int, odds: int):
    """The kinds without a kernel: batch norm, activations, dropout, upsample, adaptive pools."""
    kind = draw(st.sampled_from(["bn", "act", "dropout", "upsample", "adaptiveavgpool", "adaptivemaxpool"]))
    if kind == "bn":
        affine = draw(st.booleans())
        return f"bn:affine={str(affine).lower()}", lambda: nn.BatchNorm2d(channels, affine=affine), channels
    if kind == "act":
        name = draw(st.sampled_from(sorted(ACTIVATIONS)))
        return name, ACTIVATIONS[name], channels
    if kind == "dropout":
        p = rarely(draw, st.sampled_from([0.0, 0.2, 0.5, 1.0]), st.sampled_from([1.5, 2.0]), odds)
        return f"dropout:p={p}", lambda: nn.Dropout(p), channels
    if kind == "upsample":
        scale = draw(geometry(1, 2, odds))
        pair = scale if isinstance(scale, tuple) else (scale, scale)
        return f"upsample:scale={_text(scale)}", lambda: nn.Upsample(scale_factor=tuple(map(float, pair))), channels
    out = draw(geometry(1, 6, odds))
    module = nn.AdaptiveAvgPool2d if kind == "adaptiveavgpool" else nn.AdaptiveMaxPool2d
    return f"{kind}:out={_text(out)}", lambda: module(out), channels


@st.composite
def heads(draw, odds: int):
    """flatten, then linear layers (with activations, dropout or a BatchNorm1d between them)."""
    specs, makers = ["flatten"], [nn.Flatten]
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(["relu", "tanh", "dropout", "bn"]))
            specs.append(name)
            makers.append({"dropout": nn.Dropout, "bn": nn.LazyBatchNorm1d, **ACTIVATIONS}[name])
        out, bias = rarely(draw, st.integers(1, 5), st.just(0), odds), draw(st.booleans())
        specs.append(f"linear:out={out}" + ("" if bias else ",bias=false"))
        makers.append(lambda out=out, bias=bias: nn.LazyLinear(out, bias=bias))
    return specs, makers


@st.composite
def chains(draw, side=st.integers(8, 48), length=st.integers(1, 4), odds: int = 25):
    """Random chains, mostly valid; `odds` sets how often a value is drawn from outside the usual range.
    One in three ends with a classifier head."""
    tiny = st.integers(1, 7)
    c, h, w = draw(st.integers(1, 6)), rarely(draw, side, tiny, odds), rarely(draw, side, tiny, odds)
    specs, makers = [], []
    channels = c
    for _ in range(draw(length)):
        spec, make, channels = draw(layers(channels, odds))
        specs.append(spec)
        makers.append(make)
    if draw(st.integers(0, 2)) == 0:
        head_specs, head_makers = draw(heads(odds))
        specs += head_specs
        makers += head_makers
    return (c, h, w), specs, makers


def torch_chain(shape, makers):
    """Each layer's output shape and parameter count from real modules, or None if torch refuses."""
    x = torch.zeros(1, *shape)
    rows = []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # e.g. 'same' with an even kernel warns but works
        try:
            for make in makers:
                module = make().eval()  # eval: a batch norm of batch 1 on a 1x1 map is fine in eval mode
                x = module(x)
                rows.append((tuple(x.shape[1:]), sum(p.numel() for p in module.parameters())))
        except (RuntimeError, ValueError, TypeError, IndexError):  # IndexError: a batch norm of 0 features
            return None
    # Some ConvTranspose2d backends return an empty tensor where others raise "Output size is too small";
    # an output of size 0 is a refusal either way (the rule, and torch's own for most kernels).
    if any(0 in shape for shape, _ in rows):
        return None
    return rows


@SETTINGS
@given(chains())
def test_chain_agrees_with_torch_modules(chain):
    shape, specs, makers = chain
    expected = torch_chain(shape, makers)
    if expected is None:
        with pytest.raises(CnnexpError):  # and nothing else: any other exception is a bug
            chain_shape(shape, specs)
        return
    net = chain_shape(shape, specs)
    assert [(row.output, row.params) for row in net.layers] == expected, specs
    assert net.output == expected[-1][0]
    assert net.params == sum(params for _, params in expected)


@SETTINGS
@given(chains(side=st.integers(1, 9), length=st.just(1), odds=3))
def test_single_layers_on_tiny_inputs_agree_with_torch(chain):
    """Tiny inputs put the size rules on their boundaries: outputs of exactly 1, 0 or less."""
    test_chain_agrees_with_torch_modules.hypothesis.inner_test(chain)


@settings(max_examples=40, deadline=None)
@given(chains())
def test_macs_agree_with_torch_flop_counter(chain):
    shape, specs, makers = chain
    if torch_chain(shape, makers) is None:
        return
    with FlopCounterMode(display=False) as counter, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        x = torch.zeros(1, *shape)
        for make in makers:
            x = make().eval()(x)
    # torch counts a multiply-accumulate as 2 flops, and pools as none, as cnnexp does
    assert chain_shape(shape, specs).macs == counter.get_total_flops() // 2


# ------------------------------------------------------------------------- receptive field by autograd


@st.composite
def valid_conv_pool_chains(draw):
    """Layer parameters (kind, k, s, p, d) for a conv/pool chain that is small enough to probe."""
    chain = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        d = (1, 1) if kind == "avgpool" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
        chain.append((kind, k, s, p, d))
    return chain


@settings(max_examples=60, deadline=None)
@given(valid_conv_pool_chains())
def test_receptive_field_matches_autograd(chain):
    """The input pixels one interior output pixel depends on span exactly the predicted field.

    Weights are ones and the input is ones, so no gradient cancels. A max pool routes its gradient to one
    pixel only, so it is probed with a depthwise ones-convolution of the same kernel, stride, padding and
    dilation: the same window geometry, with every pixel in the window reached.
    """
    specs = [f"{kind}:" + ("out=1," if kind == "conv" else "") + f"k={_text(k)},s={_text(s)},p={_text(p)}"
             + ("" if kind == "avgpool" else f",d={_text(d)}") for kind, k, s, p, d in chain]
    size = 8
    while True:  # an input large enough for an interior output pixel that sees no padding
        try:
            probe = chain_shape((1, size, size), specs)
        except ShapeError:
            probe = None
        if probe is not None and min(probe.output[1:]) >= 3 and size >= 2 * max(probe.layers[-1].receptive_field):
            break
        size *= 2
    modules = []
    for kind, k, s, p, d in chain:
        if kind == "avgpool":
            modules.append(nn.AvgPool2d(k, s, p))
        else:  # conv, and the stand-in for maxpool
            conv = nn.Conv2d(1, 1, k, s, p, d, bias=False)
            nn.init.ones_(conv.weight)
            modules.append(conv)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    y = nn.Sequential(*modules)(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    extent = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    assert tuple(probe.layers[-1].receptive_field) == extent, specs


# ------------------------------------------------------------------------------------- specific rules


def test_same_padding_keeps_the_size_even_for_even_kernels():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = nn.Conv2d(2, 3, (4, 5), padding="same", dilation=(3, 1))(torch.zeros(1, 2, 7, 9))
    assert chain_shape((2, 7, 9), ["conv:out=3,k=4x5,p=same,d=3x1"]).output == tuple(y.shape[1:])


@pytest.mark.parametrize(
    "spec, module, words",
    [
        ("conv:out=4,k=3,s=2,p=same", lambda: nn.Conv2d(3, 4, 3, 2, "same"), "'same' needs stride 1"),
        ("convT:out=4,k=3,p=same", lambda: nn.ConvTranspose2d(3, 4, 3, padding="same"), "no padding='same'"),
        ("maxpool:k=3,p=2", lambda: nn.MaxPool2d(3, padding=2), "more than half the kernel size 3"),
        ("maxpool:k=3,p=2,d=2", lambda: nn.MaxPool2d(3, padding=2, dilation=2), "more than half the kernel size 3"),
        ("avgpool:k=4x2,p=1x2", lambda: nn.AvgPool2d((4, 2), padding=(1, 2)), "padding 2 on W"),
        ("conv:out=4,k=3,groups=3", lambda: nn.Conv2d(3, 4, 3, groups=3), "out 4 is not divisible by groups=3"),
        ("conv:out=4,k=9", lambda: nn.Conv2d(3, 4, 9), "larger than the padded input"),
        ("conv:out=4,k=3,d=4", lambda: nn.Conv2d(3, 4, 3, dilation=4), "larger than the padded input"),
        ("convT:out=4,k=3,s=2,op=2", lambda: nn.ConvTranspose2d(3, 4, 3, 2, output_padding=2),
         "op=2 on H must be smaller than the stride (2) or the dilation (1)"),
        ("convT:out=4,k=1,p=4", lambda: nn.ConvTranspose2d(3, 4, 1, padding=4), "output H would be 0"),
        ("conv:out=4,k=3,s=0", lambda: nn.Conv2d(3, 4, 3, 0), "stride s 0 must be at least 1"),
        ("maxpool:k=9", lambda: nn.MaxPool2d(9), "output H would be 0"),
        ("avgpool:k=2,s=4,p=1,ceil=true", lambda: nn.AvgPool2d(2, 4, 1, ceil_mode=True), None),
    ],
)
def test_refusals_name_the_layer_and_say_why(spec, module, words):
    """Each row is refused by torch too (checked here); cnnexp names layer 2 and gives the reason."""
    if words is None:  # a control row: torch accepts it, so must cnnexp
        y = module()(torch.zeros(1, 3, 8, 8))
        assert chain_shape("3x8x8", ["conv:out=3,k=1", spec]).output == tuple(y.shape[1:])
        return
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        module()(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShapeError) as caught:
        chain_shape("3x8x8", ["conv:out=3,k=1", spec])
    message = str(caught.value)
    assert message.startswith(f"layer 2 {spec!r}: ") and words in message and "\n" not in message


@pytest.mark.parametrize(
    "spec, words",
    [
        ("pool:k=3", "unknown layer kind 'pool'"),
        ("conv:out=4,k=3,q=1", "unknown key 'q' for conv"),
        ("avgpool:k=3,d=2", "unknown key 'd' for avgpool"),
        ("conv:k=3", "missing the output channels"),
        ("maxpool:s=2", "missing the kernel size"),
        ("conv:out=4,k=3x", "'3x' is not N or NxM"),
        ("conv:out=4,k=3,bias=no", "bias='no' must be true or false"),
        ("conv:out=4,k=3,k=5", "key 'k' given twice"),
        ("conv:out=four,k=3", "out='four' must be an integer"),
        # loose specs: an empty item, and kinds and keys in the wrong case, are refused with the fix
        ("conv:out=4,,k=3", "an empty item (two commas in a row)"),
        ("conv:out=4,k=3,", "a trailing comma"),
        ("conv:,out=4,k=3", "a leading comma"),
        ("Conv:out=4,k=3", ("unknown layer kind 'Conv'; use one of conv, maxpool, avgpool, convT, adaptiveavgpool, "
                            "adaptivemaxpool, upsample, bn, identity, relu, relu6, gelu, sigmoid, tanh, silu, "
                            "hardswish, leakyrelu, dropout, flatten, linear (they are case-sensitive: did you mean "
                            "'conv'?)")),
        ("bn:eps=small", "eps='small' must be a number such as 0.001"),
        ("BN", "did you mean 'bn'?"),
        ("batchnorm", "unknown layer kind 'batchnorm'; use one of conv"),
        ("batchnorm", "(did you mean 'bn'?)"),
        ("fc:out=10", "(did you mean 'linear'?)"),
        ("relu:p=1", "unknown key 'p' for relu; it takes inplace"),
        ("flatten:dim=1", "unknown key 'dim' for flatten; it takes no keys"),
        ("linear:bias=false", "missing the output features, e.g. out=1000"),
        ("adaptiveavgpool:k=2", "unknown key 'k' for adaptiveavgpool; it takes out"),
        ("adaptivemaxpool", "missing the output size, e.g. out=1 or out=7x7"),
        ("adaptiveavgpool:out=7x", "'7x' is not N or NxM"),
        ("upsample", "missing the scale factor, e.g. scale=2"),
        ("upsample:scale=1.5", "'1.5' is not N or NxM"),
        ("bn:affine=yes", "affine='yes' must be true or false"),
        ("dropout:p=half", "p='half' must be a probability such as 0.5"),
        ("dropout:p=0.5,p=0.1", "key 'p' given twice"),
        ("convt:out=4,k=3", "did you mean 'convT'?"),
        ("MAXPOOL:k=2", "did you mean 'maxpool'?"),
        ("conv:out=4,K=3", ("unknown key 'K' for conv; it takes out, k, s, p, d, groups, bias (they are "
                            "case-sensitive: did you mean 'k'?)")),
        ("conv:out=4,k=\u00b2", "is not N or NxM"),  # a digit to str.isdigit, not to int()
        (f"conv:out={2**63},k=3", "is beyond int64"),
        ("conv:out=4,k=3,p=" + "9" * 5000, "(5000 characters) is beyond int64"),  # not Python's int() limit
    ],
)
def test_malformed_specs_are_config_errors(spec, words):
    with pytest.raises(ConfigError, match="^layer 1 ") as caught:
        chain_shape("3x8x8", [spec])
    assert words in str(caught.value)


@pytest.mark.parametrize("text", ["3x224", "0x8x8", "3x-8x8", "axbxc", "3x8x8x8", "3x\u00b2x8", f"3x{2**63}x8"])
def test_bad_input_shape_is_refused(text):
    with pytest.raises(ConfigError, match="input"):
        chain_shape(text, ["conv:out=1,k=1"])


def test_values_are_case_insensitive_and_match_torch():
    """`bias=False`, `ceil=TRUE`, `p=SAME`: the words are read case-insensitively (kinds and keys are not)."""
    modules = [nn.Conv2d(3, 4, 3, bias=False), nn.MaxPool2d(3, ceil_mode=True), nn.Conv2d(4, 2, 2, padding="same")]
    net = chain_shape("3x10x10", ["conv:out=4,k=3,bias=False", "maxpool:k=3,ceil=TRUE", "conv:out=2,k=2,p=SAME"])
    x = torch.zeros(1, 3, 10, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row, module in zip(net.layers, modules):
            x = module(x)
            assert row.output == tuple(x.shape[1:]) and row.params == sum(p.numel() for p in module.parameters())


def test_int64_is_torchs_integer_range():
    assert INT64_MAX == torch.iinfo(torch.int64).max
    torch.tensor(INT64_MAX)
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        torch.tensor(INT64_MAX + 1)
    assert parse_int(str(INT64_MAX), "x") == INT64_MAX and parse_int(f"-{INT64_MAX}", "x") == -INT64_MAX
    with pytest.raises(ConfigError, match="beyond int64"):
        parse_int(str(INT64_MAX + 1), "x")


@pytest.mark.parametrize(
    "shape, out, kernel, padding",
    [
        ((1, 2**31, 2**30 - 1), 1, 1, 0),  # 2**61 - 2**31 floats: torch accepts
        ((1, 2**31, 2**30), 1, 1, 0),  # input of 2**61 floats: 2**63 bytes overflows int64
        ((1, 2**30, 2**30), 2, 1, 0),  # the output overflows
        ((1, 2**30, 2**30), 1, 3, 0),  # the output is smaller than the input: accepted
        ((1, 8, 8), 2**50, (2**11, 1), (2**10, 0)),  # the weight overflows
        ((1, 8, 8), 2**49, (2**11, 1), (2**10, 0)),  # the weight just fits
        ((1, 8, 8), 1, 1, 2**62),  # the output's height overflows int64
    ],
)
def test_tensors_too_large_for_torch_are_refused_as_torch_does(shape, out, kernel, padding):
    """On the meta device torch checks every size without allocating: the reference for huge shapes."""
    try:
        conv = nn.Conv2d(shape[0], out, kernel, padding=padding, device="meta")
        expected = tuple(conv(torch.empty(1, *shape, device="meta")).shape[1:])
    except (RuntimeError, TypeError):
        expected = None
    pair = lambda v: v if isinstance(v, int) else f"{v[0]}x{v[1]}"  # noqa: E731
    spec = f"conv:out={out},k={pair(kernel)},p={pair(padding)}"
    if expected is None:
        with pytest.raises(CnnexpError, match="more than PyTorch can address|beyond int64"):
            chain_shape("x".join(map(str, shape)), [spec])
    else:
        assert chain_shape("x".join(map(str, shape)), [spec]).output == expected


def test_pool_stride_defaults_to_kernel_and_conv_stride_to_one():
    assert parse_layer("maxpool:k=3x2").stride == (3, 2)
    assert parse_layer("avgpool:k=2").stride == (2, 2)
    assert parse_layer("conv:out=1,k=3").stride == (1, 1)


def test_single_layer_is_a_chain_of_one_conv():
    shape, specs = single_conv("224x200", "3", "2", "1", "1", in_channels=3, out_channels=8)
    y = nn.Conv2d(3, 8, 3, 2, 1)(torch.zeros(1, 3, 224, 200))
    net = chain_shape(shape, specs)
    assert net.output == tuple(y.shape[1:]) and specs == ["conv:out=8,k=3,s=2,p=1,d=1"]


@pytest.mark.parametrize(
    "size, words",
    [("0", "SIZE '0': sizes must be at least 1"), ("5x0", "SIZE '5x0': sizes must be at least 1"),
     ("-3", "SIZE '-3'"), (str(2**63), "SIZE: '9223372036854775808' is beyond int64"),
     (f"{2**31}x{2**30}", "SIZE '2147483648x1073741824': the input would have")],
)
def test_single_layer_size_errors_name_size_not_input(size, words):
    with pytest.raises(ConfigError) as caught:
        single_conv(size, "3")
    assert str(caught.value).startswith(words) and "--input" not in caught.value.message(lambda name: f"--{name}")
    with pytest.raises(ConfigError, match="^--size"):  # conv-check's name for it
        single_conv(size, "3", what="--size")


def test_size_with_input_is_refused():
    with pytest.raises(ConfigError, match="either SIZE .* not both"):
        shape_from_flags("32", "3", input="5x100x100")


@pytest.mark.parametrize(
    "layer, error, words",
    [("conv:out=4,k=3,bias=no", ConfigError, "layer 2 'conv:out=4,k=3,bias=no': bias='no' must be true or false"),
     ("conv:out=4,k=30", ShapeError, "layer 2 'conv:out=4,k=30': the effective kernel 30")],
)
def test_errors_in_a_files_layers_name_the_file(tmp_path, layer, error, words):
    path = tmp_path / "net.yaml"
    path.write_text(f"input: 3x8x8\nlayers:\n  - conv:out=3,k=1\n  - {layer}\n")
    with pytest.raises(error) as caught:
        shape_from_flags(path=path)
    assert str(caught.value).startswith(f"{path}: {words}")
    # a bad --input is the flag's fault, not the file's
    with pytest.raises(ConfigError, match="^input: '3x8' is not CxHxW"):
        shape_from_flags(path=path, input="3x8")


def test_dense_comparison_counts_a_real_linear_layer():
    net = chain_shape("2x6x5", ["conv:out=3,k=3,s=2"])
    n_in, n_out = 2 * 6 * 5, 3 * net.output[1] * net.output[2]
    assert net.dense_params == sum(p.numel() for p in nn.Linear(n_in, n_out).parameters())


def test_json_has_exactly_the_contract_keys():
    data = chain_shape("3x32x32", ["conv:out=8,k=3,p=1", {"residual": ["conv:out=8,k=3,p=1"]}, "maxpool:k=2"]).to_json()
    assert list(data) == ["input", "layers", "output", "params", "macs", "blocks", "receptive_field", "jump", "dtype",
                          "activations", "activation_bytes", "peak_bytes", "peak_at", "forward_backward_bytes"]
    assert list(data["layers"][0]) == ["layer", "output", "params", "macs", "receptive_field", "jump", "path",
                                       "activations", "bytes"]
    assert [row["path"] for row in data["layers"]] == ["1", "2.residual.1", "3"]
    assert data["layers"][2]["layer"] == "maxpool:k=2"
    assert list(data["blocks"][0]) == ["kind", "output", "params", "macs", "receptive_field", "jump", "path",
                                       "activations", "bytes"]
    assert data["blocks"][0]["kind"] == "residual" and data["blocks"][0]["path"] == "2"


def test_chain_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x32x32\nlayers:\n  - conv:out=8,k=3,p=1\n  - maxpool:k=2\n")
    assert load_chain(path) == ("3x32x32", ["conv:out=8,k=3,p=1", "maxpool:k=2"])


@pytest.mark.parametrize(
    "text, words",
    [
        ("input: 3x8x8\nlayer: [conv:out=1,k=1]\n", "unknown key 'layer'"),
        ("input: 3x8x8\nlayers: []\n", "'layers' must be a non-empty list"),
        ("layers:\n  - {conv: {out: 1}}\n", "layer 1: must be a spec string like 'conv:out=64,k=3', {repeat: N, "
                                          "layers: [...]} or {residual: [...], shortcut: [...]}; got a mapping with "
                                          "keys 'conv'"),
        ("layers: [conv:out=1,k=1\n", "YAML error (line 2"),
        ("input: 3x8x8\ninput: 3x9x9\nlayers: [conv:out=1,k=1]\n", "key 'input' appears twice"),
        ("- conv:out=1,k=1\n", "expected a mapping"),
        ("input: [3, 8, 8]\nlayers: [conv:out=1,k=1]\n", "input: '[3, 8, 8]' is not CxHxW"),
    ],
)
def test_bad_chain_files_name_the_file_and_key(tmp_path, text, words):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_chain(path)
    assert str(caught.value).startswith(str(path)) and words in str(caught.value)


def test_shapes_imports_no_heavy_library():
    code = "import sys, cnnexp.shapes; print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------- whole networks, built here in torch
# The five shipped networks, written the way torchvision writes them (its BasicBlock, Bottleneck,
# InvertedResidual, features + classifier), without torchvision. `probe=True` builds the same geometry with
# one channel, averaging weights and ReLU everywhere, for the autograd receptive fields.

NETS = Path(__file__).resolve().parent.parent / "configs" / "nets"
TORCHVISION_PARAMS = {"alexnet": 61_100_840, "vgg16": 138_357_544, "resnet18": 11_689_512,
                      "resnet50": 25_557_032, "mobilenet_v2": 3_504_872}


class Add(nn.Module):
    """branch(x) + shortcut(x), the shortcut being the identity when it has no layers."""

    def __init__(self, branch, shortcut=()):
        super().__init__()
        self.branch, self.shortcut = nn.Sequential(*branch), nn.Sequential(*shortcut)

    def forward(self, x):
        return self.branch(x) + self.shortcut(x)


class Builder:
    """nn modules for the networks; with `probe`, the one-channel stand-ins (a max pool becomes an averaging
    convolution of the same window: a max routes its gradient to one pixel only)."""

    def __init__(self, probe: bool = False):
        self.probe = probe

    def ch(self, c: int) -> int:
        return 1 if self.probe else c

    def conv(self, c_in, c_out, k, s=1, p=0, groups=1, bias=True):
        groups = 1 if self.probe else groups
        return nn.Conv2d(self.ch(c_in), self.ch(c_out), k, s, p, groups=groups, bias=bias)

    def maxpool(self, k, s, p=0):
        return self.conv(1, 1, k, s, p, bias=False) if self.probe else nn.MaxPool2d(k, s, p)

    def bn(self, c):
        return nn.BatchNorm2d(self.ch(c))

    def act(self, six: bool = False):
        return nn.ReLU6(inplace=True) if six and not self.probe else nn.ReLU(inplace=True)

    def alexnet(self):
        b = self
        return nn.Sequential(
            b.conv(3, 64, 11, 4, 2), b.act(), b.maxpool(3, 2), b.conv(64, 192, 5, p=2), b.act(), b.maxpool(3, 2),
            b.conv(192, 384, 3, p=1), b.act(), b.conv(384, 256, 3, p=1), b.act(), b.conv(256, 256, 3, p=1),
            b.act(), b.maxpool(3, 2), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 4096),
            nn.ReLU(True), nn.Linear(4096, 1000))

    def vgg16(self):
        layers, c_in = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if v == "M":
                layers.append(self.maxpool(2, 2))
            else:
                layers += [self.conv(c_in, v, 3, p=1), self.act()]
                c_in = v
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), nn.Linear(512 * 7 * 7, 4096),
                             nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                             nn.Linear(4096, 1000))

    def resnet(self, bottleneck: bool, counts):
        b, expansion = self, 4 if bottleneck else 1
        layers = [b.conv(3, 64, 7, 2, 3, bias=False), b.bn(64), b.act(), b.maxpool(3, 2, 1)]
        inplanes = 64
        for planes, n, stride in zip((64, 128, 256, 512), counts, (1, 2, 2, 2)):
            for i in range(n):
                s = stride if i == 0 else 1
                if bottleneck:  # torchvision's v1.5: the stride sits on the 3x3 conv
                    branch = [b.conv(inplanes, planes, 1, bias=False), b.bn(planes), b.act(),
                              b.conv(planes, planes, 3, s, 1, bias=False), b.bn(planes), b.act(),
                              b.conv(planes, planes * 4, 1, bias=False), b.bn(planes * 4)]
                else:
                    branch = [b.conv(inplanes, planes, 3, s, 1, bias=False), b.bn(planes), b.act(),
                              b.conv(planes, planes, 3, 1, 1, bias=False), b.bn(planes)]
                shortcut = ([b.conv(inplanes, planes * expansion, 1, s, bias=False), b.bn(planes * expansion)]
                            if s != 1 or inplanes != planes * expansion else [])
                layers += [Add(branch, shortcut), b.act()]
                inplanes = planes * expansion
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(inplanes, 1000))

    def mobilenet_v2(self):
        b = self
        layers, c_in = [b.conv(3, 32, 3, 2, 1, bias=False), b.bn(32), b.act(True)], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                stride, hidden = s if i == 0 else 1, int(round(c_in * t))
                block = [b.conv(c_in, hidden, 1, bias=False), b.bn(hidden), b.act(True)] if t != 1 else []
                block += [b.conv(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), b.bn(hidden),
                          b.act(True), b.conv(hidden, c, 1, bias=False), b.bn(c)]
                layers += [Add(block)] if stride == 1 and c_in == c else block
                c_in = c
        layers += [b.conv(320, 1280, 1, bias=False), b.bn(1280), b.act(True)]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Dropout(0.2),
                             nn.Linear(1280, 1000))

    def build(self, name: str) -> nn.Module:
        return {"alexnet": self.alexnet, "vgg16": self.vgg16, "mobilenet_v2": self.mobilenet_v2,
                "resnet18": lambda: self.resnet(False, (2, 2, 2, 2)),
                "resnet50": lambda: self.resnet(True, (3, 4, 6, 3))}[name]()


def traced(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor]]:
    """Every leaf module and every residual add, with its output, in the order the forward runs them:
    the order of cnnexp's rows without the repeat totals (a block's children run before its add)."""
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o))) for m in net.modules()
             if isinstance(m, Add) or not (list(m.children()) or isinstance(m, nn.Sequential))]
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return outputs


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_shipped_networks_match_torch_layer_by_layer(name):
    """Shapes and params of every row, torchvision's total, and the flop counter's MACs (on the meta device:
    torch's own shape and flop rules, without computing a single number)."""
    net = shape_from_flags(path=NETS / f"{name}.yaml")
    with torch.device("meta"):
        model = Builder().build(name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        steps = traced(model, torch.empty(1, 3, 224, 224, device="meta"))
    rows = [r for r in net.rows if r.kind != "repeat"]
    assert [r.kind == "residual" for r in rows] == [isinstance(m, Add) for m, _ in steps]
    for row, (module, out) in zip(rows, steps):
        assert row.output == tuple(out.shape[1:]), row.path
        if not isinstance(module, Add):
            assert row.params == sum(p.numel() for p in module.parameters()), row.path
    assert net.params == sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]
    assert net.macs == counter.get_total_flops() // 2 and counter.get_total_flops() % 2 == 0
    # memory: every output (layers and adds), and torchinfo's figure: twice the outputs of layers with params
    assert net.activations == sum(out.numel() for _, out in steps)
    assert net.forward_backward == 2 * sum(out.numel() for m, out in steps
                                           if not isinstance(m, Add) and any(True for _ in m.parameters()))
    assert [row.params for row in net.rows if row.kind == "residual"] == \
           [sum(p.numel() for p in m.parameters()) for m, _ in steps if isinstance(m, Add)]


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_shipped_networks_receptive_fields_match_autograd(name):
    """Every spatial row's receptive field (layers inside residual branches and the adds too) against the
    input pixels autograd finds behind one interior output pixel, on a one-channel copy of the network."""
    specs = load_chain(NETS / f"{name}.yaml")[1]
    deepest = max(r.receptive_field[0] for r in chain_shape("3x224x224", specs).rows if len(r.output) == 3)
    size = 32 * (deepest // 32 + 3)  # the deepest field (491 pixels for MobileNetV2) inside, away from the border
    net = chain_shape(f"3x{size}x{size}", specs)
    model = Builder(probe=True).build(name).double().eval()
    model = model[:[type(m) for m in model].index(nn.AdaptiveAvgPool2d) + 1]  # up to the global pool
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    steps = traced(model, x)
    rows = [r for r in net.rows if r.kind != "repeat"]
    checked, before = 0, None
    for row, (_, out) in zip(rows, steps):
        # every add, and every layer that widens the field (the others keep the field of the row before)
        widens, before = row.receptive_field != before, row.receptive_field
        if len(row.output) != 3 or not (widens or row.kind == "residual"):
            continue
        if row.kind == "adaptiveavgpool" and row.output[1:] != (1, 1):  # windows of uneven sizes: the widest's
            continue
        h, w = out.shape[2] // 2, out.shape[3] // 2
        (grad,) = torch.autograd.grad(out[0, 0, h, w], x, retain_graph=True)
        r, c = torch.nonzero(grad[0, 0], as_tuple=True)
        assert row.kind == "adaptiveavgpool" or 0 < r.min() and r.max() < size - 1, "use a larger input"
        assert row.receptive_field == (int(r.max() - r.min()) + 1, int(c.max() - c.min()) + 1), row.path
        checked += 1
    assert checked >= 8


# ------------------------------------------------------------------------------ the new kinds, one by one


def autograd_field(modules, size: int) -> tuple[int, int]:
    """Rows and columns of input pixels behind one interior output element (weights averaging, input ones)."""
    with torch.no_grad():
        for m in nn.Sequential(*modules).modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.fill_(1 / m.weight[0].numel())
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = nn.Sequential(*modules).double()(x)
    y[(0, *(n // 2 for n in y.shape[1:]))].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    return int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1


@pytest.mark.parametrize(
    "specs, modules, size",
    [
        (["conv:out=1,k=3", "adaptiveavgpool:out=4", "conv:out=1,k=3"],
         lambda: [nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(4), nn.Conv2d(1, 1, 3)], 18),  # a window of 4, stride 4
        (["conv:out=1,k=3", "adaptivemaxpool:out=1"], lambda: [nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)], 9),
        # a global pool depends on the whole input, not on the padding around it
        (["conv:out=1,k=3,p=1", "conv:out=1,k=5,s=2,p=2", "adaptiveavgpool:out=1"],
         lambda: [nn.Conv2d(1, 1, 3, 1, 1), nn.Conv2d(1, 1, 5, 2, 2), nn.AdaptiveAvgPool2d(1)], 8),
        (["conv:out=1,k=3,p=1", "flatten", "linear:out=2"],
         lambda: [nn.Conv2d(1, 1, 3, 1, 1), nn.Flatten(), nn.Linear(64, 2)], 8),
        (["conv:out=1,k=3", "upsample:scale=2", "conv:out=1,k=3"],
         lambda: [nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2.0), nn.Conv2d(1, 1, 3)], 16),
        (["conv:out=1,k=3,s=2", "flatten", "linear:out=3", "relu", "linear:out=2"],
         lambda: [nn.Conv2d(1, 1, 3, 2), nn.Flatten(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 2)], 9),
        (["conv:out=1,k=3", "bn", "gelu", "dropout", "sigmoid", "conv:out=1,k=3"],
         lambda: [nn.Conv2d(1, 1, 3), nn.BatchNorm2d(1).eval(), nn.GELU(), nn.Dropout().eval(), nn.Sigmoid(),
                  nn.Conv2d(1, 1, 3)], 12),
    ],
)
def test_receptive_field_of_the_new_kinds_matches_autograd(specs, modules, size):
    """An adaptive pool counts as its window (max pool probed as average: the same window); a global pool or a
    linear layer after a flatten sees the whole input; elementwise layers keep the field."""
    net = chain_shape(f"1x{size}x{size}", specs)
    assert net.receptive_field == autograd_field(modules(), size)


@pytest.mark.parametrize(
    "branch, shortcut",
    [
        ([nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1)], []),
        ([nn.Conv2d(1, 1, 1)], [nn.Conv2d(1, 1, 5, padding=2)]),  # the shortcut is the longer path
        ([nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 3, padding=1)], [nn.Conv2d(1, 1, 1, 2)]),  # ResNet's downsample
        # 'same' with an even kernel pads on the right: the branch sees [o, o+2], the shortcut [o-1, o+1], the
        # sum [o-1, o+2], wider than either path
        ([nn.Conv2d(1, 1, 2, padding="same"), nn.Conv2d(1, 1, 2, padding="same")], [nn.Conv2d(1, 1, 3, padding=1)]),
    ],
)
def test_residual_block_field_is_the_span_of_both_paths(branch, shortcut):
    def spec(m):
        if isinstance(m, nn.ReLU):
            return "relu"
        padding = m.padding if isinstance(m.padding, str) else m.padding[0]
        return f"conv:out=1,k={m.kernel_size[0]},s={m.stride[0]},p={padding}"

    block = {"residual": [spec(m) for m in branch], "shortcut": [spec(m) for m in shortcut]}
    net = chain_shape("1x16x16", ["conv:out=1,k=3", block, "conv:out=1,k=3"])
    modules = [nn.Conv2d(1, 1, 3), Add(branch, shortcut), nn.Conv2d(1, 1, 3)]
    with torch.no_grad():
        for m in modules[1].modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1 / m.weight[0].numel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'same' with an even kernel warns
        assert net.output == tuple(nn.Sequential(*modules)(torch.ones(1, 1, 16, 16)).shape[1:])
        assert net.receptive_field == autograd_field(modules, 16)
    assert net.params == sum(p.numel() for m in modules for p in m.parameters())


def test_rows_paths_and_block_totals():
    net = chain_shape("2x8x8", ["conv:out=4,k=3,p=1",
                                {"repeat": 2, "layers": [{"residual": ["conv:out=4,k=3,p=1", "bn"]}, "relu"]},
                                "flatten", "linear:out=3"])
    assert [(r.path, r.layer) for r in net.rows] == [
        ("1", "conv:out=4,k=3,p=1"),
        ("2.1.1.residual.1", "conv:out=4,k=3,p=1"), ("2.1.1.residual.2", "bn"), ("2.1.1", "residual (total)"),
        ("2.1.2", "relu"),
        ("2.2.1.residual.1", "conv:out=4,k=3,p=1"), ("2.2.1.residual.2", "bn"), ("2.2.1", "residual (total)"),
        ("2.2.2", "relu"),
        ("2", "repeat x2 (total)"), ("3", "flatten"), ("4", "linear:out=3")]
    assert [r.depth for r in net.rows][:5] == [0, 2, 2, 1, 1]
    block = (4 * 4 * 9 + 4) + 2 * 4  # conv + bn
    assert net.rows[3].params == block and net.rows[9].params == 2 * block
    assert net.output == (3,) and net.rows[-2].output == (256,)
    assert net.params == 2 * 4 * 9 + 4 + 2 * block + 256 * 3 + 3


def test_flow_lists_split_by_yaml_are_rejoined(tmp_path):
    """YAML reads `[conv:out=8,k=3,p=1, relu]` as four items; the key=value pieces go back to their spec."""
    flow, block = tmp_path / "flow.yaml", tmp_path / "block.yaml"
    flow.write_text("input: 3x8x8\nlayers:\n  - residual: [conv:out=3,k=3,p=1, bn, relu, conv:out=3, k=1]\n")
    block.write_text("input: 3x8x8\nlayers:\n  - residual:\n    - conv:out=3,k=3,p=1\n    - bn\n    - relu\n"
                     "    - conv:out=3,k=1\n")
    assert shape_from_flags(path=flow) == shape_from_flags(path=block)
    assert [r.layer for r in shape_from_flags(path=flow).rows][-2] == "conv:out=3,k=1"


def test_memory_peak_and_dtype_by_hand():
    """Input 1x4x4 (16 elements). In the branch x stays alive: 16 + 32 (first conv), then 16 + 32 + 16 = 64
    (second conv); the projection shortcut: 16 (branch output) + 16 (x) + 16; the add: 16 + 16 + 16."""
    block = {"residual": ["conv:out=2,k=1", "conv:out=1,k=1"], "shortcut": ["conv:out=1,k=1"]}
    net = chain_shape("1x4x4", [block], dtype="float16")
    assert (net.peak, net.peak_at) == (64, "1.residual.2")
    assert net.activations == 32 + 16 + 16 + 16  # three convs and the add
    assert net.to_json()["peak_bytes"] == 128 and net.to_json()["activation_bytes"] == 160
    assert net.forward_backward == 2 * (32 + 16 + 16)
    plain = chain_shape("1x4x4", ["conv:out=8,k=1", "relu", "maxpool:k=2"])
    assert (plain.peak, plain.peak_at) == (128 + 128, "2")  # relu: its input and output, 128 each
    with pytest.raises(ConfigError, match="dtype 'float8': use one of float32, float16, bfloat16"):
        chain_shape("1x4x4", ["relu"], dtype="float8")


@pytest.mark.parametrize(
    "chain, error, words",
    [
        (["conv:out=4,k=3", "linear:out=10"], ShapeError,
         "layer 2 'linear:out=10': linear takes a flat input, but gets 4 x 6 x 6; put a flatten before it "
         "(giving 144)"),
        (["flatten", "conv:out=4,k=3"], ShapeError,
         "layer 2 'conv:out=4,k=3': conv needs a C x H x W input, but its input is flat (192); put it before the "
         "flatten"),
        (["flatten", "adaptiveavgpool:out=1"], ShapeError, "adaptiveavgpool needs a C x H x W input"),
        (["flatten", "linear:out=0"], ShapeError, "layer 2 'linear:out=0': out=0 features"),
        (["adaptiveavgpool:out=0x2"], ShapeError, "out=0x2; an adaptive pool's output must be at least 1x1"),
        (["upsample:scale=0"], ShapeError, "scale=0 must be at least 1"),
        (["dropout:p=1.5"], ShapeError, "p=1.5 must be between 0 and 1"),
        ([{"residual": ["conv:out=4,k=3,p=1"]}], ShapeError,
         "block 1 (residual): the residual branch gives 4 x 8 x 8 but the identity shortcut gives 3 x 8 x 8; "
         "they must match to be added"),
        (["relu", {"repeat": 1, "layers": [{"residual": ["conv:out=3,k=3,s=2,p=1"], "shortcut": ["maxpool:k=3"]}]}],
         ShapeError, "block 2.1.1 (residual): the residual branch gives 3 x 4 x 4 but the shortcut gives 3 x 2 x 2"),
        ([{"residual": ["conv:out=3,k=9"]}], ShapeError, "layer 1.residual.1 'conv:out=3,k=9': the effective kernel"),
        ([{"repeat": 2, "layers": ["relu", "conv:out=3,k=5"]}], ShapeError, "layer 1.2.2 'conv:out=3,k=5'"),
        ([{"repeat": 0, "layers": ["relu"]}], ConfigError, "layer 1: repeat: 0 must be a whole number from 1 to"),
        ([{"repeat": True, "layers": ["relu"]}], ConfigError, "repeat: True must be a whole number"),
        ([{"repeat": "2", "layers": ["relu"]}], ConfigError, "repeat: '2' must be a whole number"),
        ([{"repeat": 2}], ConfigError, "layer 1: a repeat block needs 'layers', a non-empty list"),
        ([{"repeat": 2, "layers": ["relu"], "times": 3}], ConfigError,
         "layer 1: unknown key 'times' in a repeat block; it takes repeat and layers"),
        ([{"residual": []}], ConfigError, "layer 1: 'residual' must be a non-empty list of layers"),
        ([{"residual": "conv:out=3,k=1"}], ConfigError, "'residual' must be a non-empty list of layers"),
        ([{"residual": ["relu"], "shortcut": "relu"}], ConfigError, "'shortcut' must be a non-empty list"),
        ([{"residual": ["relu"], "skip": ["relu"]}], ConfigError, "unknown key 'skip' in a residual block"),
        ([{"residual": [["relu"]]}], ConfigError, "layer 1.residual.1: must be a spec string"),
        ([{"residual": ["relu", {"residual": ["rleu"]}]}], ConfigError,
         "layer 1.residual.2.residual.1 'rleu': unknown layer kind 'rleu'"),
        ([7], ConfigError, "layer 1: must be a spec string like 'conv:out=64,k=3'"),
        ([{"conv": {"out": 4}}], ConfigError, "got a mapping with keys 'conv'"),
        (["flatten", "linear:in=100,out=2"], ShapeError, "layer 2 'linear:in=100,out=2': in=100, but the flat input "
                                                         "has 192 features"),
        ([{"repeat": 5_000, "layers": ["relu", "relu"]}], ConfigError,
         "the chain expands to 10,001 rows, more than 5,000; lower a repeat count"),
    ],
)
def test_bad_blocks_and_flat_layers_are_refused_naming_the_path(chain, error, words):
    with pytest.raises(error) as caught:
        chain_shape("3x8x8", chain)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_yaml_spellings_of_a_layer_and_of_the_identity_shortcut(tmp_path):
    """`- conv: out=4,k=3` (YAML makes it a one-key mapping) is `conv:out=4,k=3`; `shortcut: identity` and an
    empty shortcut are the identity; bn's eps and momentum, and linear's `in`, are accepted."""
    path = tmp_path / "net.yaml"
    path.write_text("input: 3x8x8\nlayers:\n  - conv: out=3,k=3,p=1\n  - bn: eps=1e-3,momentum=0.01\n"
                    "  - residual: [identity, relu]\n    shortcut: identity\n  - residual: [relu]\n    shortcut: []\n"
                    "  - flatten:\n  - linear: in=192,out=2\n")
    plain = chain_shape("3x8x8", ["conv:out=3,k=3,p=1", "bn", {"residual": ["identity", "relu"]},
                                  {"residual": ["relu"]}, "flatten", "linear:out=2"])
    net = shape_from_flags(path=path)
    assert [r.layer for r in net.rows][:2] == ["conv:out=3,k=3,p=1", "bn:eps=1e-3,momentum=0.01"]
    assert (net.output, net.params, net.macs) == (plain.output, plain.params, plain.macs)
    assert net.params == sum(p.numel() for m in (nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3, 1e-3, 0.01), nn.Linear(192, 2))
                             for p in m.parameters())


def test_deeply_nested_blocks_are_refused():
    chain: list = ["relu"]
    for _ in range(40):
        chain = [{"residual": chain}]
    with pytest.raises(ConfigError, match="blocks nested more than 32 deep"):
        chain_shape("3x8x8", chain)


def test_shipped_network_files_need_no_flags():
    """Each file holds its input; ResNet-18 ends as torchvision's does."""
    net = shape_from_flags(path=NETS / "resnet18.yaml")
    assert net.input == (3, 224, 224) and net.output == (1000,)
    assert [r.output for r in net.rows if r.layer == "adaptiveavgpool:out=1"] == [(512, 1, 1)]


@st.composite
def residual_chains(draw):
    """Specs and one-channel modules for chains of strided convs and residual blocks whose paths keep the
    size ('same' padding, even kernels included, which pad one pixel more on the right)."""

    def keeping(draw):
        k, d = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        return f"conv:out=1,k={k},p=same,d={d}", nn.Conv2d(1, 1, k, padding="same", dilation=d)

    specs, modules = [], []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            specs.append(f"conv:out=1,k={k},s={s},p={k // 2}")
            modules.append(nn.Conv2d(1, 1, k, s, k // 2))
        else:
            branch = [keeping(draw) for _ in range(draw(st.integers(1, 3)))]
            shortcut = [keeping(draw) for _ in range(draw(st.integers(0, 2)))]
            specs.append({"residual": [s for s, _ in branch], "shortcut": [s for s, _ in shortcut]})
            modules.append(Add([m for _, m in branch], [m for _, m in shortcut]))
    return specs, modules


@settings(max_examples=40, deadline=None)
@given(residual_chains())
def test_random_residual_chains_fields_match_autograd(chain):
    specs, modules = chain
    field = chain_shape("1x8x8", specs).receptive_field
    size = 2 * int(max(field)) + 16  # the interior element's field well inside the input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'same' with an even kernel warns
        assert chain_shape(f"1x{size}x{size}", specs).receptive_field == field == autograd_field(modules, size)

"""The laws of the study that theory states exactly: exponents in small_init (and depth) and one limit value.

Nothing here fits or reads anything: each law is derived on paper (docs/fit.md writes every derivation out),
and `cnnexp.fit` puts the fitted slope beside it, so a reader can check one against the other.

    >>> law("plain", "x_grad_norm", "small_init", "power", {"depth": 3, "activation": "relu"})
    Law(value=12.0, kind='exact', why='plain relu stack, depth 3: out is homogeneous of degree 2L in small_init')
    >>> law("residual", "param_grad_norm", "small_init", "power", {"depth": 1, "activation": "relu"}).kind
    'limit'
    >>> law("plain", "x_grad_norm", "small_init", "power", {"depth": 1, "activation": "tanh"}) is None
    True
    >>> x_grad_limit(norm_x=8.0, batch=4, d=2)       # 2 ||x|| / (batch d)
    2.0

Two kinds of law:
- exact: holds at every small_init > 0, up to rounding, so a fit's 95% interval (or EXACT_TOLERANCE, the
  rounding floor of float64 and float32 logarithms) must hold it;
- limit: the slope the metric tends to as small_init -> 0; a fit over a finite range is off by the O(c^2)
  correction, so it holds within LIMIT_TOLERANCE (0.02-0.07 over [1e-3, 1e-1] for residual and prenorm).

Exactness needs a positively homogeneous activation: relu(c z) = c relu(z) for c > 0. tanh and gelu are
not (tanh(c z) = c z - (c z)^3 / 3 + ...), so the plain stack has no exact law with them.
"""
from __future__ import annotations

from dataclasses import dataclass

from cnnexp.nets import WEIGHTED, Block, Node, lay_out, net_from_items
from cnnexp.schema import BLOCK_KIND, BlockKind

EXACT_TOLERANCE = 1e-6  # an exact law holds when inside the interval or this close (rounding in log10)
LIMIT_TOLERANCE = 0.1  # a limit holds when the fitted slope is this close (the O(c^2) correction)
HOMOGENEOUS = ("relu",)  # activations with act(c z) = c act(z) for every c > 0 (positively homogeneous)
DEFAULTS = {"depth": 1, "activation": "relu", "alpha_init": 0.0}  # schema defaults, for files without a column


@dataclass(frozen=True)
class Law:
    """A derived slope: its value, whether it is exact or a small_init -> 0 limit, and the argument in brief."""

    value: float
    kind: str  # "exact" or "limit"
    why: str

    @property
    def tolerance(self) -> float:
        return EXACT_TOLERANCE if self.kind == "exact" else LIMIT_TOLERANCE


def law(block: str, metric: str, axis: str, law_name: str, config: dict) -> Law | None:
    """The slope theory derives for `metric` of `block` against `axis` under a law, or None.

    Args:
        block: plain, residual, rezero or prenorm.
        metric: a results column (loss, x_grad_norm, a1_grad_norm, param_grad_norm, w_norm).
        axis: the fitted axis (small_init, depth, ...).
        law_name: "power" (log-log slope) or "exponential" (decades per unit of the axis).
        config: the group's other configuration values; depth, activation and alpha_init are read (schema
            defaults when absent).

    Returns:
        The law, or None where none is derived (then the fits table leaves `theory` empty).
    """
    index = config.get("block_index")  # a per-layer file: the block's index, 0 next to the input
    config = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    if axis == "small_init" and law_name == "power":
        if index is not None:
            return _per_layer(block, metric, int(config["depth"]), str(config["activation"]), int(index))
        return _small_init(block, metric, int(config["depth"]), str(config["activation"]),
                           float(config["alpha_init"]))
    if axis == "depth" and law_name == "exponential":
        return _depth(block, metric, float(config["alpha_init"]))
    return None


def _kind(block: str) -> BlockKind | None:
    """The block's entry in schema.BLOCK_KINDS (None for a name of none: no law)."""
    return BLOCK_KIND.get(block)


def _identity_at_zero(kind: BlockKind | None, alpha_init: float) -> bool:
    """A gated kind at alpha_init 0: the network is exactly the identity."""
    return kind is not None and kind.gated and alpha_init == 0


def _small_init(block: str, metric: str, depth: int, activation: str, alpha_init: float) -> Law | None:
    kind = _kind(block)
    if kind is None:
        return None
    if not kind.skip and activation in HOMOGENEOUS:
        # every weight is c V: out(c) = c^(2L) out(1), d out / d x ~ c^(2L), d out / d a1 ~ c^(2L-1),
        # d out / d W ~ c^(2L-1), and every gradient is (2 / (batch d)) (d out / d .)^T out
        exponents = {"loss": 4 * depth, "x_grad_norm": 4 * depth, "a1_grad_norm": 4 * depth - 1,
                     "param_grad_norm": 4 * depth - 1, "w_norm": 1}
        why = f"{block} {activation} stack, depth {depth}: out is homogeneous of degree 2L in small_init"
        return _law(exponents, metric, "exact", why)
    if _identity_at_zero(kind, alpha_init):
        # alpha = 0: out = x exactly; only the gates have a gradient, (2/(batch d)) <x, F_k(x)> ~ c^2 (relu)
        # (F is c^2 F(1) exactly for relu, c^2 act'(0) V2 V1 x + ... otherwise); a1_grad_norm is exactly 0
        # (d out / d a1 carries the factor alpha), so every value of it is left out and it has no law
        why = f"{block} at alpha_init 0: the network is the identity"
        if metric == "param_grad_norm":
            return Law(2.0, "exact" if activation in HOMOGENEOUS else "limit", why)
        return _law({"loss": 0, "x_grad_norm": 0, "w_norm": 1}, metric, "exact", why)
    if kind.skip:
        # F = O(c^2) so out -> x; a1 and weight gradients carry one factor c; a nonzero gate keeps w_norm
        if metric == "w_norm" and not kind.gated:
            return Law(1.0, "exact", f"{block}: every parameter is small_init times its draw")
        exponents = {"loss": 0, "x_grad_norm": 0, "a1_grad_norm": 1, "param_grad_norm": 1, "w_norm": 0}
        return _law(exponents, metric, "limit", f"{block}: out -> x as small_init -> 0")
    return None


def _per_layer(block: str, metric: str, depth: int, activation: str, k: int) -> Law | None:
    kind = _kind(block)
    if kind is None or kind.skip or activation not in HOMOGENEOUS:
        return None
    # block k's input is c^(2k) times its c = 1 value and d out / d (its output) ~ c^(2(L-k-1)); every
    # gradient is that Jacobian times out ~ c^(2L)
    exponents = {"a1_grad_norm": 4 * depth - 2 * k - 1, "fc1_grad_norm": 4 * depth - 1,
                 "fc2_grad_norm": 4 * depth - 1, "out_grad_norm": 4 * depth - 2 * k - 2}
    return _law(exponents, metric, "exact", f"{block} {activation} stack, depth {depth}, block {k}")


def _depth(block: str, metric: str, alpha_init: float) -> Law | None:
    if _identity_at_zero(_kind(block), alpha_init):
        return _law({"loss": 0, "x_grad_norm": 0}, metric, "exact",
                    f"{block} at alpha_init 0: the network is the identity at every depth")
    return None


def _law(exponents: dict, metric: str, kind: str, why: str) -> Law | None:
    return Law(float(exponents[metric]), kind, why) if metric in exponents else None


# Layers with f(c z) = c f(z) for every c > 0 and no parameter: a network of these and of weighted layers
# without biases is positively homogeneous in its weights (dropout is the identity in the study).
HOMOGENEOUS_LAYERS = ("relu", "leakyrelu", "identity", "dropout", "flatten", "maxpool", "avgpool",
                      "adaptiveavgpool", "adaptivemaxpool", "upsample")


def net_law(block: str, metric: str, axis: str, law_name: str, config: dict, net: dict | None) -> Law | None:
    """The slope theory derives for a whole network's `metric` against small_init (power law), or None.

    With init small and no batch norm in the run, a network whose every layer is positively homogeneous
    (HOMOGENEOUS_LAYERS, and conv/convT/linear without biases) and whose every input-to-output path crosses
    the same number k of weighted layers has out(c) = c^k out(1) when every weight is c times its draw. Then
    loss = mean(out^2) ~ c^(2k), x_grad_norm = ||(2/n) J^T out|| ~ c^(2k) (J = d out / d x ~ c^k), each weight's
    gradient (2/n) (d out / d W)^T out ~ c^(2k-1), and w_norm ~ c. Anything else (a bias, a batch norm, paths
    of different lengths such as a residual block's, another init): no law.

    Args:
        block: plain (the twin) or residual (the network as written).
        net: the network as the results' provenance records it: {"input": ..., "layers": [...]}.
    """
    if axis != "small_init" or law_name != "power" or net is None or config.get("init", "small") != "small":
        return None
    items = net_from_items(str(config.get("net")), str(config.get("input") or net["input"]), net["layers"])
    assert items.input is not None
    nodes = lay_out(items.items, items.input, skips=block != "plain", bn=config.get("bn", "on") == "on")
    k = homogeneous_degree(nodes)
    if k is None or k == 0:
        return None
    exponents = {"loss": 2 * k, "x_grad_norm": 2 * k, "param_grad_norm": 2 * k - 1, "w_norm": 1}
    why = f"{config.get('net')} ({block}): positively homogeneous, {k} weighted layers on every path"
    return _law(exponents, metric, "exact", why)


def homogeneous_degree(nodes: tuple[Node | Block, ...]) -> int | None:
    """The number of weighted layers on every input-to-output path of a positively homogeneous network without
    biases, or None (a layer that is not such, or paths that disagree)."""
    k = 0
    for node in nodes:
        if isinstance(node, Block):
            branch = homogeneous_degree(node.branch)
            shortcut = homogeneous_degree(node.shortcut) if node.skip else branch  # (the twin: the branch alone)
            if branch is None or branch != shortcut:
                return None
            k += branch
        elif node.layer.kind in WEIGHTED:
            if node.layer.bias:
                return None
            k += 1
        elif node.layer.kind not in HOMOGENEOUS_LAYERS:
            return None
    return k


def vanishes(block: str, metric: str, config: dict) -> str | None:
    """Why `metric` is exactly 0 for every small_init, or None: rezero's a1 gradient at alpha_init 0 (d out / d a1
    carries the factor alpha), whatever the activation and depth."""
    alpha_init = float({**DEFAULTS, **config}["alpha_init"])
    if _identity_at_zero(_kind(block), alpha_init) and metric == "a1_grad_norm":
        return "exactly 0 at alpha_init 0"
    return None


def x_grad_limit(norm_x: float, batch: int, d: int) -> float:
    """The input gradient's norm when the network is the identity: d mean(x^2) / dx = 2 x / (batch d).

    Residual and prenorm x_grad_norm tend to it as small_init -> 0; rezero at alpha_init 0 equals it.
    """
    return 2.0 * norm_x / (batch * d)


def has_x_grad_limit(block: str) -> bool:
    """Whether `block`'s x_grad_norm tends to `x_grad_limit` as small_init -> 0 (for any depth)."""
    kind = _kind(block)
    return kind is not None and kind.skip

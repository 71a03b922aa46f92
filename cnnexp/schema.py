"""The columns of the study: sweep axes and metrics, one entry each.

Every name here is used unchanged as a YAML key, a dataclass field, a CSV column and (with dashes) a flag,
so adding an axis or a metric is one entry in one of the two tables below.

    >>> [a.name for a in AXES if a.study != NET]
    ['d', 'batch', 'small_init', 'seed', 'depth', 'activation', 'dtype', 'alpha_init', 'steps', 'lr', 'target']
    >>> CONFIG_COLUMNS[:2], METRICS[0]
    (('block', 'd'), 'loss')
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MLP, NET, BOTH = "mlp", "net", "both"  # the studies: the notebook's block (d, depth, ...) or a whole network


@dataclass(frozen=True)
class Axis:
    """One sweep axis: its name, Python type, default and the rule its values obey."""

    name: str
    kind: type  # int, float or str
    default: object
    help: str
    check: Callable[[object], str | None] = lambda v: None  # returns what is wrong, or None
    choices: tuple[str, ...] = ()  # for kind=str: the allowed values
    used_by: tuple[str, ...] = ()  # the blocks that read it (empty: every block)
    training: bool = False  # a training axis: a column only in files of sweeps that train (see `columns`)
    study: str = MLP  # which study reads it: MLP (the notebook's block), NET (whole networks) or BOTH


def _at_least_one(v) -> str | None:
    return None if v >= 1 else "must be at least 1"


MAX_DEPTH = 10_000  # autograd through a deeper stack crashed the interpreter (the reference engine, at 15,000)


def _depth(v) -> str | None:
    return _at_least_one(v) or (None if v <= MAX_DEPTH else f"must be at most {MAX_DEPTH:,} (deeper stacks "
                                                             "exhaust what torch's autograd can do)")


def _seed_range(v) -> str | None:
    # torch.manual_seed takes 0 .. 2**64-1; a negative seed would alias one of those
    return None if 0 <= v < 2**64 else "must be between 0 and 2**64 - 1 (torch.manual_seed's range)"


def _finite(v) -> str | None:
    return None if math.isfinite(v) else "must be finite"


def _finite_non_negative(v) -> str | None:
    return _finite(v) or (None if v >= 0 else "must not be negative")


def _non_negative(v) -> str | None:
    return None if v >= 0 else "must not be negative (0: the study at init, no update)"


def _fraction(v) -> str | None:
    return None if 0 <= v <= 1 else "must be between 0 and 1 (a fraction of the training set)"


def _finite_positive(v) -> str | None:
    return _finite(v) or (None if v > 0 else "must be greater than 0")


AXES: tuple[Axis, ...] = (
    Axis("d", int, 256, "width of the blocks (x has shape batch x d)", _at_least_one),
    Axis("batch", int, 64, "rows of the random input x", _at_least_one, study=BOTH),
    Axis("small_init", float, 1e-4, "std of the Gaussian every weight is redrawn from", _finite_non_negative,
         study=BOTH),
    Axis("seed", int, 123, "torch.manual_seed for x and the weights", _seed_range, study=BOTH),
    Axis("depth", int, 1, "number of blocks of the same kind in sequence", _depth),
    Axis("activation", str, "relu", "the nonlinearity inside F", choices=("relu", "tanh", "gelu")),
    Axis("dtype", str, "float32", "precision of the run (x and weights are drawn in float32, then converted)",
         choices=("float32", "float64"), study=BOTH),
    Axis("alpha_init", float, 0.0, "initial gate alpha of the rezero block (other blocks ignore it)", _finite,
         used_by=("rezero",)),
    Axis("steps", int, 0, "full-batch gradient descent updates on the fixed x (0: the study at init)",
         _non_negative, training=True),
    Axis("lr", float, 0.1, "learning rate of the updates W <- W - lr * dloss/dW (a network on data: SGD's)",
         _finite_positive, training=True, study=BOTH),
    Axis("target", str, "zero", "what the loss mean((out - y)^2) fits: y = 0, x, T2 relu(T1 x) or x + T2 relu(T1 x)",
         choices=("zero", "identity", "teacher_plain", "teacher_residual"), training=True),
    # whole networks (docs/nets.md): a sweep's top-level `net:` and these axes, instead of d, depth, ...
    Axis("net", str, "", "the network: a net file (beside the sweep file) or a shipped name such as resnet20",
         study=NET),
    Axis("input", str, "", "the input of one sample, CxHxW or N (flat); default: the net file's", study=NET),
    Axis("init", str, "small", "the scale of each drawn tensor: small_init, He (kaiming) or Glorot (xavier)",
         choices=("small", "kaiming", "xavier"), study=NET),
    Axis("bn", str, "on", "on: the network's batch norms as written; off: every bn layer removed",
         choices=("on", "off"), study=NET),
    Axis("zero_residual", bool, False, "the last batch norm of each residual branch starts at weight 0",
         study=NET),
    # training a network on data (docs/data.md): the data set, and SGD's settings beside lr and batch
    Axis("data", str, "random", "random (x drawn, no training), digits, npz:PATH or cifar10:DIR", study=NET),
    Axis("epochs", int, 0, "passes over the training set (0: the study at init on the first batch)",
         _non_negative, study=NET),
    Axis("momentum", float, 0.9, "SGD momentum (no dampening, no Nesterov)", _finite_non_negative, study=NET),
    Axis("weight_decay", float, 0.0, "SGD weight decay, on every parameter", _finite_non_negative, study=NET),
    Axis("schedule", str, "constant", "the learning rate over the run: constant, or cosine decay per step",
         choices=("constant", "cosine"), study=NET),
    Axis("eval_every", int, 1, "an evaluation pass after every N-th epoch (and after the last)", _at_least_one,
         study=NET),
    Axis("fit_acc", float, 0.99, "epochs_to_fit: the first epoch whose running training accuracy reaches this",
         _fraction, study=NET),
    Axis("augment", str, "none", "none, or flip_crop: pad 4, random crop to the input, random horizontal flip",
         choices=("none", "flip_crop"), study=NET),
)
AXIS = {a.name: a for a in AXES}
TEACHER_TARGETS: tuple[str, ...] = ("teacher_plain", "teacher_residual")  # targets drawn as a teacher network



@dataclass(frozen=True)
class BlockKind:
    """One block kind of the study, y = skip(x) + gate * F(normalise(x)) with F = fc2(act(fc1(.))): the one
    entry the engines (their kernels and modules, cnnexp.blocks.Block) and cnnexp.theory read.

    A new kind is one entry in BLOCK_KINDS (and its laws in cnnexp.theory, where theory derives any)."""

    name: str
    formula: str
    skip: bool  # the identity path: y = x + ... (False: y = F(x), the plain block)
    gated: bool  # a learnable scalar gate alpha on F, starting at alpha_init (read from that axis)
    normalised: bool  # F sees LayerNorm(x) (no affine parameters) instead of x

    def out(self, x: Any, f: Any, alpha: Any = None) -> Any:
        """The block's output from its input x and F's output f (alpha: the gate, for a gated kind); works on
        tensors and floats alike."""
        if not self.skip:
            return f
        return x + alpha * f if self.gated else x + f


BLOCK_KINDS: tuple[BlockKind, ...] = (
    BlockKind("plain", "y = F(x)", skip=False, gated=False, normalised=False),
    BlockKind("residual", "y = x + F(x)", skip=True, gated=False, normalised=False),
    BlockKind("rezero", "y = x + alpha * F(x)", skip=True, gated=True, normalised=False),
    BlockKind("prenorm", "y = x + F(LayerNorm(x))", skip=True, gated=False, normalised=True),
)
BLOCK_KIND: dict[str, BlockKind] = {k.name: k for k in BLOCK_KINDS}
BLOCKS: tuple[str, ...] = tuple(BLOCK_KIND)
DEFAULT_BLOCKS: tuple[str, ...] = ("plain", "residual")
RATIO_BLOCKS: tuple[str, str] = ("residual", "plain")  # the study's ratio: residual over plain

# Metric columns, in CSV order; each is one float per block and configuration.
METRIC_HELP: dict[str, str] = {
    "loss": "mean of out**2 over the batch and features",
    "x_grad_norm": "L2 norm of d loss / d x (the input gradient)",
    "a1_grad_norm": "L2 norm of d loss / d a1, a1 = fc1(x), captured by a hook",
    "w_norm": "L2 norm of all parameters together",
    "param_grad_norm": "L2 norm of all parameter gradients together",
    "cos_x_out": "cosine between the gradients at the input x and at the output",
}
STEP_METRICS: tuple[str, ...] = tuple(METRIC_HELP)  # measured at any step s: the curve file's metrics
# Metrics of a whole training run, in files of sweeps that train.
TRAINING_METRIC_HELP: dict[str, str] = {
    "initial_loss": "the loss at step 0, before any update",
    "steps_to_fit": "the first step s with loss <= 0.1 * mean(y^2); empty for the zero target or when never reached",
}
METRIC_HELP.update(TRAINING_METRIC_HELP)
METRICS: tuple[str, ...] = tuple(METRIC_HELP)
FIT_FRACTION = 0.1  # steps_to_fit: the loss at or below this fraction of the target's mean square
# The version of the training definition (docs/training.md), recorded in the provenance of training sweeps:
# raise it when a change would give a training run other numbers.
TRAINING_DEFINITION = 1

# Metrics of the per-layer file (--per-layer): one row per run and block index, 0 next to the input.
LAYER_METRIC_HELP: dict[str, str] = {
    "a1_grad_norm": "L2 norm of the gradient at this block's a1 = fc1(input)",
    "fc1_grad_norm": "L2 norm of the gradient of this block's fc1 weight",
    "fc2_grad_norm": "L2 norm of the gradient of this block's fc2 weight",
    "out_grad_norm": "L2 norm of the gradient at this block's output",
}
LAYER_METRICS: tuple[str, ...] = tuple(LAYER_METRIC_HELP)
# The study's finding: these two, residual over plain (the sweep table's ratios, a plot's default y).
FINDING_METRICS: tuple[str, ...] = ("x_grad_norm", "param_grad_norm")

TRAINING_AXES: tuple[str, ...] = tuple(a.name for a in AXES if a.training)
# The metrics every results file has had since the first release (a file without provenance must have them).
REQUIRED_METRICS: tuple[str, ...] = ("loss", "x_grad_norm", "a1_grad_norm", "w_norm", "param_grad_norm")

# Whole networks (docs/nets.md): the metrics of a network's row, and of each of its layers (--per-layer).
NET_METRICS: tuple[str, ...] = ("loss", "x_grad_norm", "w_norm", "param_grad_norm")
NET_LAYER_KEYS: tuple[str, ...] = ("path", "layer")  # a layer's place (conv-shape's path) and its spec
NET_LAYER_METRIC_HELP: dict[str, str] = {
    "act_sq_mean": "mean over channels of the squared channel mean of the layer's output (over batch and space)",
    "act_var": "mean over channels of the channel variance (population) of the layer's output",
    "out_grad_norm": "L2 norm of the gradient at the layer's output",
    "weight_norm": "L2 norm of the layer's parameters (empty for a layer without any)",
    "weight_grad_norm": "L2 norm of the gradients of the layer's parameters (empty for a layer without any)",
    "branch_var": "act_var of a residual block's branch output, before the add (on the block's own row)",
}
NET_LAYER_METRICS: tuple[str, ...] = tuple(NET_LAYER_METRIC_HELP)
# A network trained on data (docs/data.md): its results row, and its curve file's row per epoch.
DATA_METRIC_HELP: dict[str, str] = {
    "train_loss": "cross-entropy over the training set, in the last evaluation pass (evaluation mode)",
    "train_acc": "fraction of the training set classified right, in the last evaluation pass",
    "test_loss": "cross-entropy over the test set, in the last evaluation pass",
    "test_acc": "fraction of the test set classified right, in the last evaluation pass",
    "best_test_acc": "the largest test_acc of all evaluation passes",
    "epochs_to_fit": "the first epoch whose running training accuracy is >= fit_acc; empty if none",
}
DATA_METRICS: tuple[str, ...] = tuple(DATA_METRIC_HELP)
EPOCH_METRIC_HELP: dict[str, str] = {
    "running_loss": "the epoch's training loss as computed while training (minibatches weighted by size)",
    "running_acc": "the epoch's training accuracy as computed while training (correct / n)",
    "running_error": "1 - running_acc, as (n - correct) / n",
    "train_loss": DATA_METRIC_HELP["train_loss"].replace("in the last", "in this epoch's") + " (empty: none ran)",
    "train_acc": DATA_METRIC_HELP["train_acc"].replace("in the last", "in this epoch's"),
    "test_loss": DATA_METRIC_HELP["test_loss"].replace("in the last", "in this epoch's"),
    "test_acc": DATA_METRIC_HELP["test_acc"].replace("in the last", "in this epoch's"),
    "param_grad_norm": "L2 norm of the loss's gradient over every parameter at the epoch's last step (no decay)",
    "x_grad_norm": "L2 norm of the loss's gradient at the input of the epoch's last minibatch",
}
EPOCH_METRICS: tuple[str, ...] = tuple(EPOCH_METRIC_HELP)
# The version of the definition of training a network on data (docs/data.md): recorded in the provenance and in
# every checkpoint; raise it when a change would give a run other numbers.
DATA_TRAINING_DEFINITION = 2
# Every metric name of any file; any other column of a results file describes the configuration.
ALL_METRICS: tuple[str, ...] = tuple(dict.fromkeys((*METRICS, *LAYER_METRICS, *NET_LAYER_METRICS, *DATA_METRICS,
                                                    *EPOCH_METRICS)))
# a network's axes, in the order of its files' columns and of its grid (the last varies fastest)
NET_AXES: tuple[str, ...] = ("net", "input", "batch", "init", "small_init", "bn", "zero_residual", "dtype", "seed")
# the axes of training on data, after those in a sweep on data's files (a sweep of random x has none of them)
DATA_AXES: tuple[str, ...] = ("data", "epochs", "lr", "momentum", "weight_decay", "schedule", "eval_every",
                              "fit_acc", "augment")
DATA_NET_AXES: tuple[str, ...] = (*NET_AXES[:-2], *DATA_AXES, *NET_AXES[-2:])  # dtype and seed last

# The columns that identify a row; everything else in a results CSV is a metric.
CONFIG_COLUMNS: tuple[str, ...] = ("block", *(a.name for a in AXES if a.study != NET))
NET_CONFIG_COLUMNS: tuple[str, ...] = ("block", *NET_AXES)
COLUMNS: tuple[str, ...] = (*CONFIG_COLUMNS, *METRICS)
LAYER_COLUMNS: tuple[str, ...] = (*CONFIG_COLUMNS, "block_index", *LAYER_METRICS)
CURVE_COLUMNS: tuple[str, ...] = (*CONFIG_COLUMNS, "step", *STEP_METRICS)


@dataclass(frozen=True)
class Columns:
    """The columns of one sweep's files.

    A sweep that trains (a training axis off its default) has every column. A sweep that does not (the study
    at init) leaves the training axes and metrics out: its files have the columns they had before training
    existed, so a file written then is resumed by the same sweep unchanged, byte for byte.
    """

    config: tuple[str, ...]  # what identifies a row (the resume key)
    results: tuple[str, ...]
    layers: tuple[str, ...]
    curve: tuple[str, ...] = CURVE_COLUMNS  # a curve file always has every column


def columns(training: bool, net: bool = False, data: bool = False) -> Columns:
    """The columns of the files of a sweep that trains (or does not), of the notebook's block or of whole
    networks (`net`), on random x or on a data set (`data`).

        >>> columns(False).results[-1], columns(True).results[-1], columns(False, net=True).config[:3]
        ('cos_x_out', 'steps_to_fit', ('block', 'net', 'input'))
        >>> columns(False, net=True, data=True).curve[-11:-9]
        ('seed', 'epoch')
    """
    if net and data:
        config = ("block", *DATA_NET_AXES)
        return Columns(config, (*config, *NET_METRICS, *DATA_METRICS), (*config, *NET_LAYER_KEYS, *NET_LAYER_METRICS),
                       (*config, "epoch", *EPOCH_METRICS))
    if net:
        return Columns(NET_CONFIG_COLUMNS, (*NET_CONFIG_COLUMNS, *NET_METRICS),
                       (*NET_CONFIG_COLUMNS, *NET_LAYER_KEYS, *NET_LAYER_METRICS))
    if training:
        return Columns(CONFIG_COLUMNS, COLUMNS, LAYER_COLUMNS)
    config = tuple(c for c in CONFIG_COLUMNS if c not in TRAINING_AXES)
    return Columns(config, (*config, *STEP_METRICS), (*config, "block_index", *LAYER_METRICS))

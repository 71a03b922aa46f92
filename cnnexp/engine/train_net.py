"""Training a whole network on a data set (docs/data.md): definition version 2, resumable epoch by epoch.

For one configuration and block (the network as written, `residual`, or its plain twin, `plain`):

    torch.manual_seed(seed); draw the parameters (docs/nets.md, version 1's draw without x); to the dtype
    order = torch.Generator().manual_seed(seed)                the shuffles' own stream
    T = epochs * ceil(n_train / batch)
    for epoch e = 1 .. epochs:
        perm = randperm(n_train, generator=order)
        augment flip_crop: flip = rand(n_train, generator=order) < 0.5, then
                           offset = randint(0, 9, (n_train, 2), generator=order)   (row, column of the crop)
            the k-th sample of perm is padded by 4 zeros, cropped at offset[k], flipped left-right if flip[k]
        for each minibatch b of perm (`batch` samples in order; the last may be smaller), step t = 0 .. T-1:
            rate = lr (constant) | lr * (1 + cos(pi * t / T)) / 2 (cosine), set before the step
            loss = cross_entropy(net(x_b), y_b)          training mode (batch norm on the minibatch)
            torch.optim.SGD's step: g = dloss/dp + weight_decay * p; v = momentum * v + g (v = g at first);
                                    p = p - rate * v
        running loss and accuracy: over the epoch's minibatches, each weighted by its size
        after e % eval_every == 0 and after the last epoch: evaluation mode, no gradient, the whole train and
            test sets in chunks of EVAL_CHUNK: mean cross-entropy and accuracy (correct / n)

The epoch's record also holds the gradient norms of its last step before the update (`param_grad_norm`:
every parameter, batch norm's too, weight decay not; `x_grad_norm`: at that minibatch's input).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnnexp.blocks import DTYPES
from cnnexp.config import RunConfig
from cnnexp.data import DataSet, load_data
from cnnexp.engine.cost import EVAL_CHUNK
from cnnexp.engine.reference import _grad, one
from cnnexp.engine.result import Metrics, checkpoint_file, run_id
from cnnexp.errors import ResultsError
from cnnexp.norms import norm
from cnnexp.schema import DATA_METRICS, DATA_TRAINING_DEFINITION, NET_METRICS

PAD = 4  # flip_crop: zeros on each side before the crop


def rate(config: RunConfig, step: int, total: int) -> float:
    """The learning rate set before step `step` (0-based, over the whole run) of `total`."""
    if config.schedule == "cosine":
        return config.lr * (1 + math.cos(math.pi * step / total)) / 2
    return config.lr


def tensors(data: DataSet, device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """x_train, y_train, x_test, y_test on the device, the inputs in the run's dtype."""
    return (torch.from_numpy(data.x_train).to(device, dtype), torch.from_numpy(data.y_train).to(device),
            torch.from_numpy(data.x_test).to(device, dtype), torch.from_numpy(data.y_test).to(device))


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the network over a whole set, in evaluation mode."""
    net.eval()
    losses, correct = [], 0
    with torch.no_grad():
        for start in range(0, len(y), EVAL_CHUNK):
            out = net(x[start:start + EVAL_CHUNK])
            target = y[start:start + EVAL_CHUNK]
            losses.append(float(F.cross_entropy(out, target, reduction="sum")))
            correct += int((out.argmax(1) == target).sum())
    return math.fsum(losses) / len(y), correct / len(y)


def flip_crop(x: torch.Tensor, flip: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Each image of x (B, C, H, W) padded by PAD zeros, cropped back to H x W at its offset (row, column),
    and flipped left-right where flip is True."""
    _, _, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    rows = offset[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offset[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    picked = padded[torch.arange(len(x), device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)


def train(config: RunConfig, block: str, net: nn.Module, device: str = "cpu",
          checkpoints: str | os.PathLike[str] | None = None) -> tuple[Metrics, tuple[Metrics, ...]]:
    """Train a drawn network (in the run's dtype, on `device`) as version 2 defines; its metrics and one curve
    point per epoch. With `checkpoints` (a folder), the state after each epoch is kept there and a run
    interrupted before is continued from it, to the same numbers."""
    x_train, y_train, x_test, y_test = tensors(load_data(config.data), device, DTYPES[config.dtype])
    n, batch = len(y_train), config.batch
    per_epoch = math.ceil(n / batch)
    total = config.epochs * per_epoch
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    state: dict[str, Any] = {"epoch": 0, "curve": [], "best": None, "fit": None, "last": None}
    where = checkpoint_file(checkpoints, block, config) if checkpoints is not None else None
    if where is not None and where.exists():
        state = _resume(where, block, config, net, optimizer, order)
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        perm = torch.randperm(n, generator=order)
        augment = None
        if config.augment == "flip_crop":
            augment = (torch.rand(n, generator=order) < 0.5, torch.randint(0, 2 * PAD + 1, (n, 2), generator=order))
        losses, correct = [], 0
        grads: dict[str, float] = {}
        net.train()
        for i in range(per_epoch):
            part = slice(i * batch, (i + 1) * batch)  # this minibatch's places in the epoch's order
            picked = perm[part].to(device)
            xb, yb = x_train[picked], y_train[picked]
            if augment is not None:
                xb = flip_crop(xb, augment[0][part].to(device), augment[1][part].to(device))
            last = i == per_epoch - 1
            if last:
                xb.requires_grad_(True)
            for group in optimizer.param_groups:
                group["lr"] = rate(config, (epoch - 1) * per_epoch + i, total)
            out = net(xb)
            loss = F.cross_entropy(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if last:
                grads = {"param_grad_norm": one(norm, *(p.grad for p in net.parameters() if p.grad is not None)),
                         "x_grad_norm": one(norm, _grad(xb))}
            optimizer.step()
            losses.append(float(loss.detach()) * len(yb))
            correct += int((out.detach().argmax(1) == yb).sum())
        point: Metrics = {"epoch": epoch, "running_loss": math.fsum(losses) / n, "running_acc": correct / n,
                          "running_error": (n - correct) / n, "train_loss": None, "train_acc": None,
                          "test_loss": None, "test_acc": None, **grads}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            point["train_loss"], point["train_acc"] = evaluate(net, x_train, y_train)
            point["test_loss"], point["test_acc"] = evaluate(net, x_test, y_test)
            state["best"] = point["test_acc"] if state["best"] is None else max(state["best"], point["test_acc"])
            state["last"] = {k: point[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
        if state["fit"] is None and correct / n >= config.fit_acc:
            state["fit"] = epoch
        state["epoch"] = epoch
        state["curve"].append(point)
        if where is not None:
            _save(where, block, config, net, optimizer, order, state)
    metrics: Metrics = {**dict.fromkeys(NET_METRICS), **dict.fromkeys(DATA_METRICS), **(state["last"] or {}),
                        "best_test_acc": state["best"], "epochs_to_fit": state["fit"]}
    return metrics, tuple(state["curve"])


def _save(where: Path, block: str, config: RunConfig, net: nn.Module, optimizer: torch.optim.Optimizer,
          order: torch.Generator, state: dict[str, Any]) -> None:
    """The run's state after an epoch, written atomically (a temporary file, then renamed over the last)."""
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    torch.save({"definition": DATA_TRAINING_DEFINITION, "run": run_id(block, config), "model": net.state_dict(),
                "optimizer": optimizer.state_dict(), "generator": order.get_state(), **state}, tmp)
    os.replace(tmp, where)


def _resume(where: Path, block: str, config: RunConfig, net: nn.Module, optimizer: torch.optim.Optimizer,
            order: torch.Generator) -> dict[str, Any]:
    """Load a run's checkpoint into the network, optimizer and generator; its bookkeeping. A checkpoint of
    another run or definition version is refused by name."""
    try:
        saved = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file
        raise ResultsError(f"{where}: not a checkpoint cnnexp can read ({type(e).__name__}); remove it to start "
                           "that run afresh") from None
    if not isinstance(saved, dict) or saved.get("definition") != DATA_TRAINING_DEFINITION:
        found = saved.get("definition") if isinstance(saved, dict) else None
        raise ResultsError(f"{where}: a checkpoint of training definition version {found}, and this cnnexp trains "
                           f"by version {DATA_TRAINING_DEFINITION}; remove it to start that run afresh")
    if saved.get("run") != run_id(block, config):
        raise ResultsError(f"{where}: a checkpoint of another run (its configuration differs from {block} of "
                           "this one); remove it to start that run afresh")
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    order.set_state(saved["generator"])
    return {k: saved[k] for k in ("epoch", "curve", "best", "fit", "last")}


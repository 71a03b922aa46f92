"""Whole networks for the study: net files found and read, checked by PyTorch's rules (cnnexp.shapes), and
laid out as the layers a run computes (pure Python, no torch: a sweep plans and refuses without it).

A net file is a chain file (docs/conv-shape.md): `input` and `layers`. A run takes the network as written
(`skips=True`) or its plain twin (`skips=False`: every `{residual, shortcut}` block is its residual branch
alone), with its batch norms or without them (`bn=False`: every bn layer removed; paths stay the file's).

    >>> net = net_from_items("demo", "8x4x4", ["conv:out=8,k=3,p=1", "bn", {"residual": ["conv:out=8,k=3,p=1"]}])
    >>> [row.path for row in layer_rows(lay_out(net.items, net.input, skips=False, bn=False))]
    ['1', '3.residual.1', '3']
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnexp import examples
from cnnexp.errors import CnnexpError, ConfigError, ShapeError
from cnnexp.shapes.chain import chain_shape
from cnnexp.shapes.layers import Layer, step
from cnnexp.shapes.parse import Repeat, Residual, load_chain, parse_items
from cnnexp.shapes.types import Shape, View, numel, parse_input

# The shipped nets: configs/nets/ (cnnexp/configs/nets/ in a built package)
SHIPPED = (examples.folder() or Path("configs")) / "nets"
WEIGHTED = ("conv", "convT", "linear")  # the layers the draw fills, in file order: weight, then bias


@dataclass(frozen=True)
class NetSpec:
    """A network as a sweep names it: its name (the `net` cell of every row), the file's input and its parsed
    items. Written in a CSV cell as its name."""

    name: str
    input: Shape | None  # the file's `input` (None: the file has none; the sweep's `input` must give it)
    items: tuple[Any, ...]  # Layer, Repeat and Residual nodes (cnnexp.shapes.parse)
    digest: str = ""  # a hash of the file's layers: part of a sweep's fingerprint, so an edited file is noticed

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Node:
    """A layer that runs: its path (as conv-shape prints it), the parsed layer and its input's shape."""

    path: str
    layer: Layer
    shape_in: Shape


@dataclass(frozen=True)
class Block:
    """A residual block: branch(x) + shortcut(x) (an empty shortcut: the identity); in the plain twin
    (`skip=False`) the branch alone."""

    path: str
    branch: tuple[Node | Block, ...]
    shortcut: tuple[Node | Block, ...]
    skip: bool = True


@dataclass(frozen=True)
class Row:
    """One row of a run's per-layer file: a layer's path and spec, or a residual block's path and `residual`."""

    path: str
    layer: str


def find_net(name: str, base: Path | None = None) -> Path:
    """The file a sweep's `net` names: a path (relative to `base`, the sweep file's folder), or the name of a
    shipped net (`resnet20`: configs/nets/resnet20.yaml).

    Raises:
        ConfigError: neither exists.
    """
    given = Path(name)
    candidates = [given if given.is_absolute() or base is None else base / given]
    if "/" not in name and not given.suffix:
        candidates.append(SHIPPED / f"{name}.yaml")
    for path in candidates:
        if path.is_file():
            return path
    shipped = sorted(p.stem for p in SHIPPED.glob("*.yaml")) if SHIPPED.is_dir() else []
    raise ConfigError(f"net {name!r}: no such file ({candidates[0]})"
                      + (f" and no shipped net of that name (shipped: {', '.join(shipped)})" if shipped else ""))


def load_net(name: str, base: Path | None = None) -> NetSpec:
    """Read the net file a sweep names (see `find_net`), its layers checked as conv-shape checks them."""
    path = find_net(name, base)
    text_input, layers = load_chain(path)
    shape = None if text_input is None else parse_input(text_input, f"{path}: input")
    return net_from_items(name, shape, layers)


def net_from_items(name: str, input: str | Shape | None, layers: list[Any]) -> NetSpec:
    """A NetSpec from a chain's items as written (spec strings, repeats, residual blocks)."""
    shape = parse_input(input) if isinstance(input, str) else input
    digest = hashlib.sha256(json.dumps(layers, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return NetSpec(name, shape, parse_items(layers), digest)


def net_file(net: NetSpec) -> dict[str, Any]:
    """A network as a results file's provenance records it (its input and layers, as chain_shape reads them),
    so what was run can be read back without the file: `net_from_items(name, **net_file(net))`."""
    return {"input": "x".join(map(str, net.input)) if net.input is not None else None,
            "layers": list(_as_written(net.items))}


def lay_out(items: tuple[Any, ...], input: Shape, *, skips: bool = True, bn: bool = True) -> tuple[Node | Block, ...]:
    """The layers a run computes, in order, each with its input's shape: repeats unrolled (each pass its own
    layers), bn layers left out when `bn` is False, shortcuts left out of the plain twin (`skips` False).

    The shapes follow cnnexp.shapes' rules; call `check_net` first for a refusal that names the file."""
    return _lay_out(items, input, skips, bn, "")[0]


def _lay_out(items: tuple[Any, ...], shape: Shape, skips: bool, bn: bool,
             prefix: str) -> tuple[tuple[Node | Block, ...], Shape]:
    """`lay_out`, and the shape the items hand on."""
    out: list[Node | Block] = []
    for i, item in enumerate(items, 1):
        path = f"{prefix}{i}"
        if isinstance(item, Repeat):
            for r in range(1, item.times + 1):
                body, shape = _lay_out(item.body, shape, skips, bn, f"{path}.{r}.")
                out += body
        elif isinstance(item, Residual):
            branch, after = _lay_out(item.branch, shape, skips, bn, f"{path}.residual.")
            shortcut = _lay_out(item.shortcut, shape, skips, bn, f"{path}.shortcut.")[0] if skips else ()
            out.append(Block(path, branch, shortcut, skips))
            shape = after
        else:
            if bn or item.kind != "bn":
                out.append(Node(path, item, shape))
            shape = step(item, f"layer {path}", View(shape))[0].shape  # (a bn keeps the shape)
    return tuple(out), shape


def out_shape(items: tuple[Any, ...], input: Shape) -> Shape:
    """The shape of one sample's output of the network on `input`."""
    return _lay_out(items, input, True, True, "")[1]


def walk(nodes: tuple[Node | Block, ...]) -> Iterator[Node | Block]:
    """Every node and block in the order a run computes them: a block's branch, its shortcut, then the block."""
    for node in nodes:
        if isinstance(node, Block):
            yield from walk(node.branch)
            yield from walk(node.shortcut)
        yield node


def layer_rows(nodes: tuple[Node | Block, ...]) -> list[Row]:
    """The per-layer rows of a run, in order: one per layer that runs and one per residual block (after its
    layers, for its output)."""
    return [Row(n.path, "residual" if isinstance(n, Block) else n.layer.spec) for n in walk(nodes)]


def check_net(net: NetSpec, input: Shape | None, batch: int, bn: bool, where: str) -> Shape:
    """Refuse a network that PyTorch would refuse on this input (cnnexp.shapes' rules: a layer that does not
    fit, a branch and a shortcut of different shapes), or whose batch norm would see one value per channel
    (training mode needs more). Returns the input the runs use.

    Raises:
        ConfigError: no input (neither the file nor the sweep gives one).
        ShapeError: as above, naming `where` (the sweep file and its net) and the layer's path.
    """
    shape = input or net.input
    if shape is None:
        raise ConfigError(f"{where}: the net file has no 'input'; add input: CxHxW to it or set the sweep's input")
    try:
        _check_layers(net.items, shape, batch, bn)
    except CnnexpError as e:
        raise type(e)(f"{where}: {e.args[0]}") from None
    return shape


def _check_layers(items: tuple[Any, ...], shape: Shape, batch: int, bn: bool) -> None:
    chain_shape(shape, list(_as_written(items)))  # a layer PyTorch refuses, or a branch and shortcut that differ
    found = one_value_norm(lay_out(items, shape, bn=bn), batch)
    if found is not None:
        node, values = found
        raise ShapeError(f"layer {node.path} 'bn': batch norm would see {values} value per channel "
                         f"(batch {batch} x {' x '.join(map(str, node.shape_in[1:])) or '1'}); training "
                         "mode needs more: raise batch, or set bn: off")


def one_value_norm(nodes: tuple[Node | Block, ...], batch: int) -> tuple[Node, int] | None:
    """The first batch norm that a minibatch of `batch` samples would give fewer than two values per channel
    (training mode cannot normalise one), with that count; None if none would."""
    for node in walk(nodes):
        if isinstance(node, Node) and node.layer.kind == "bn":
            values = batch * numel(node.shape_in[1:])
            if values < 2:
                return node, values
    return None


def net_size(net: NetSpec, input: Shape) -> tuple[int, int, int]:
    """(parameters, MACs, activations) of one sample through the network with its skips (conv-shape's
    figures), for the cost of a run and its memory."""
    shape = chain_shape(input, list(_as_written(net.items)))
    return shape.params, shape.macs, shape.activations


def _as_written(items: tuple[Any, ...]) -> Iterator[Any]:
    """Parsed items back in the form chain_shape reads (spec strings and block mappings)."""
    for item in items:
        if isinstance(item, Repeat):
            yield {"repeat": item.times, "layers": list(_as_written(item.body))}
        elif isinstance(item, Residual):
            yield {"residual": list(_as_written(item.branch)), "shortcut": list(_as_written(item.shortcut))}
        else:
            yield item.spec

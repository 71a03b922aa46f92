"""Reading what the user wrote: layer specs (`KIND:key=value,...`), chain items with repeats and residual
blocks, chain files, and the one-layer form of `conv-shape`.

    >>> parse_layer("conv:out=64,k=7,s=2,p=3").stride
    (2, 2)
    >>> parse_items(["relu", {"repeat": 2, "layers": ["bn"]}])[1].times
    2
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cnnexp.errors import ConfigError, param
from cnnexp.shapes.layers import ALIASES, BOOL, FLOAT, INT, KINDS, PADDING, PAIR, POOLS, PROB, REQUIRED, Layer
from cnnexp.shapes.types import INT as INT_TEXT
from cnnexp.shapes.types import INT64_MAX, case_hint, check_numel, parse_input, parse_int, parse_pair, short
from cnnexp.yamlfile import read_yaml  # (which imports yaml only when it reads a file)

# more rows than this (once repeats are multiplied out) are refused before any work; ResNet-152 has ~500
MAX_LAYERS = 5_000
MAX_DEPTH = 32  # blocks nested deeper than this are refused
_FLOAT = re.compile(r"[0-9]*\.?[0-9]+(e-?[0-9]+)?")


@dataclass(frozen=True)
class Repeat:
    """`{repeat: N, layers: [...]}`: the layers N times over."""

    times: int
    body: tuple  # of Layer | Repeat | Residual


@dataclass(frozen=True)
class Residual:
    """`{residual: [...], shortcut: [...]}`: branch(x) + shortcut(x); an empty shortcut is the identity."""

    branch: tuple
    shortcut: tuple = ()


def parse_layer(spec: str, index: int | str = 1) -> Layer:
    """Parse a `KIND:key=value,...` spec (see docs/conv-shape.md for every kind and key).

    Args:
        spec: the layer as written, e.g. "conv:out=64,k=7,s=2,p=3", or "relu".
        index: the layer's position in its chain (1-based, or a path like "3.residual.2"), for messages.

    Returns:
        The `Layer`, with PyTorch's defaults filled in.

    Raises:
        ConfigError: unknown kind or key (both case-sensitive), an empty item, a repeated or missing key, or
            a value that is not a number or beyond int64.
    """
    where = f"layer {index} {short(str(spec))}"
    kind, _, body = str(spec).partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown layer kind {kind!r}; use one of {', '.join(KINDS)}"
                          + case_hint(kind, KINDS, ALIASES))
    keys = KINDS[kind]
    items = [i.strip() for i in body.split(",")] if body.strip() else []
    raw: dict[str, str] = {}
    for position, item in enumerate(items, 1):
        if not item:
            place = ("a trailing comma" if position == len(items) else "a leading comma" if position == 1
                     else "an empty item (two commas in a row)")
            raise ConfigError(f"{where}: {place}; write key=value items separated by single commas")
        key, eq, value = (t.strip() for t in item.partition("="))
        if not eq or not value:
            raise ConfigError(f"{where}: {item!r} is not key=value")
        if key not in keys:
            takes = f"it takes {', '.join(keys)}" if keys else "it takes no keys"
            raise ConfigError(f"{where}: unknown key {key!r} for {kind}; {takes}" + case_hint(key, keys))
        if key in raw:
            raise ConfigError(f"{where}: key {key!r} given twice")
        raw[key] = value
    for key, hint in REQUIRED.get(kind, {}).items():
        if key not in raw:
            raise ConfigError(f"{where}: missing {hint}")

    values = {key: _value(keys[key], key, value, where) for key, value in raw.items()}
    kernel = values.get("k", (1, 1))
    names = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "op": "output_padding",
             "scale": "scale", "groups": "groups", "bias": "bias", "ceil": "ceil", "affine": "affine",
             "eps": "eps", "momentum": "momentum", "slope": "slope"}
    fields = {names[k]: v for k, v in values.items() if k in names}
    if kind == "dropout":
        fields["p"] = values.get("p", 0.5)
        fields.pop("padding", None)
    if "in" in values:
        fields["features_in"] = values["in"]
    if "out" in values:
        fields["size" if keys["out"] == PAIR else "out"] = values["out"]
    fields.setdefault("stride", kernel if kind in POOLS else (1, 1))
    return Layer(spec=str(spec), kind=kind, **fields)


def _value(kind: str, key: str, value: str, where: str):
    """One value, read as its key's type says."""
    if kind == BOOL:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{where}: {key}={value!r} must be true or false")
        return value.lower() == "true"
    if kind == PADDING and value.lower() in ("same", "valid"):
        return None if value.lower() == "same" else (0, 0)
    if kind in (PAIR, PADDING):
        return parse_pair(value, f"{where}: {key}")
    if kind in (PROB, FLOAT):
        if not _FLOAT.fullmatch(value.lower()):
            raise ConfigError(f"{where}: {key}={short(value)} must be a "
                              + ("probability such as 0.5" if kind == PROB else "number such as 0.001"))
        return float(value)
    if kind == INT and INT_TEXT.fullmatch(value):
        return parse_int(value, f"{where}: {key}")
    raise ConfigError(f"{where}: {key}={value!r} must be an integer")


def parse_items(items, prefix: str = "", depth: int = 0) -> tuple:
    """Turn a chain's items (spec strings, `{repeat, layers}` and `{residual, shortcut}` mappings) into
    `Layer`, `Repeat` and `Residual` nodes, checking every spec and block on the way.

    Args:
        items: the list, as YAML (or Python) gives it.
        prefix: the path of the enclosing block, e.g. "5.1." (empty at the top level).

    Raises:
        ConfigError: a spec or block that is malformed, named by its path (e.g. "layer 3.residual.2 ...").
    """
    if depth > MAX_DEPTH:
        raise ConfigError(f"layer {prefix.rstrip('.')}: blocks nested more than {MAX_DEPTH} deep")
    nodes = []
    for i, item in enumerate(rejoin(items), 1):
        path = f"{prefix}{i}"
        if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in KINDS:
            kind, body = next(iter(item.items()))  # `- conv: out=64,k=3` is YAML for {conv: 'out=64,k=3'}
            if body is None or isinstance(body, (str, int, float)) and not isinstance(body, bool):
                item = kind if body is None else f"{kind}:{body}"
        if isinstance(item, str):
            nodes.append(parse_layer(item, path))
        elif isinstance(item, dict) and "repeat" in item:
            nodes.append(_repeat(item, path, depth))
        elif isinstance(item, dict) and "residual" in item:
            nodes.append(_residual(item, path, depth))
        else:
            got = f"a mapping with keys {', '.join(map(repr, item))}" if isinstance(item, dict) else short(str(item))
            raise ConfigError(f"layer {path}: must be a spec string like 'conv:out=64,k=3', "
                              f"{{repeat: N, layers: [...]}} or {{residual: [...], shortcut: [...]}}; got {got}")
    return tuple(nodes)


def rejoin(items) -> list:
    """Undo YAML's split of a flow list at commas: in `[conv:out=64,k=3,p=1, relu]` YAML sees the items
    'conv:out=64', 'k=3', 'p=1' and 'relu'. An item of key=value pairs alone (an '=' and no ':') cannot
    start a layer, so it continues the spec before it."""
    joined: list = []
    for item in items:
        if isinstance(item, str) and "=" in item and ":" not in item and joined and isinstance(joined[-1], str):
            joined[-1] = f"{joined[-1]},{item}"
        else:
            joined.append(item)
    return joined


def _keys(item: dict, path: str, allowed: tuple[str, ...]) -> None:
    for key in item:
        if key not in allowed:
            raise ConfigError(f"layer {path}: unknown key {key!r} in a {allowed[0]} block; it takes "
                              + " and ".join(allowed))


def _branch(value, path: str, key: str, depth: int, empty_ok: bool) -> tuple:
    if empty_ok and (value is None or value == "identity"):
        return ()
    if not isinstance(value, list) or (not value and not empty_ok):
        raise ConfigError(f"layer {path}: '{key}' must be a non-empty list of layers, got {short(str(value))}")
    return parse_items(value, f"{path}.{key}.", depth + 1)


def _repeat(item: dict, path: str, depth: int) -> Repeat:
    _keys(item, path, ("repeat", "layers"))
    times = item["repeat"]
    if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_LAYERS:
        raise ConfigError(f"layer {path}: repeat: {repr(times)[:40]} must be a whole number from 1 to "
                          f"{MAX_LAYERS:,}")
    layers = item.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"layer {path}: a repeat block needs 'layers', a non-empty list of layers")
    return Repeat(times, parse_items(layers, f"{path}.1.", depth + 1))


def _residual(item: dict, path: str, depth: int) -> Residual:
    _keys(item, path, ("residual", "shortcut"))
    return Residual(_branch(item["residual"], path, "residual", depth, empty_ok=False),
                    _branch(item.get("shortcut"), path, "shortcut", depth, empty_ok=True))


def count_rows(nodes) -> int:
    """How many table rows the nodes expand to (repeats multiplied out), without building them."""
    total = 0
    for node in nodes:
        if isinstance(node, Repeat):
            total += 1 + node.times * count_rows(node.body)
        elif isinstance(node, Residual):
            total += 1 + count_rows(node.branch) + count_rows(node.shortcut)
        else:
            total += 1
    return total


def single_conv(
    size: str,
    kernel: str,
    stride: str = "1",
    padding: str = "0",
    dilation: str = "1",
    in_channels: int = 1,
    out_channels: int | None = None,
    what: str = "SIZE",
) -> tuple[str, list[str]]:
    """Write one conv layer given by flags as an input and a one-layer chain, for `chain_shape`.

    A single layer is a chain of one conv, so both forms of `conv-shape` share every rule and message.

    Args:
        size: `H` or `HxW`.
        kernel, stride, padding, dilation: `N` or `NxM` (padding may be `same` or `valid`).
        in_channels: channels of the input (only the parameter count and the JSON depend on it).
        out_channels: channels of the output; defaults to `in_channels`.
        what: names the size in messages: `SIZE` for conv-shape, `--size` for conv-check.

    Returns:
        The input as `CxHxW` and the chain as a list with one spec.

    Raises:
        ConfigError: the size is not `H` or `HxW` of positive integers within int64, or a channel count
            is not between 1 and int64's largest.
    """
    h, w = parse_pair(size, what)
    if min(h, w) < 1:
        raise ConfigError(f"{what} {short(str(size))}: sizes must be at least 1 (e.g. 224 or 224x200)")
    for name, channels in ((param("in_channels"), in_channels), (param("out_channels"), out_channels)):
        if channels is not None and not 1 <= channels <= INT64_MAX:
            raise ConfigError(f"{name} {short(str(channels))} must be between 1 and {INT64_MAX:,} (int64)")
    check_numel((in_channels, h, w), f"{what} {short(str(size))}: the input", ConfigError)
    out = in_channels if out_channels is None else out_channels
    spec = f"conv:out={out},k={kernel},s={stride},p={padding},d={dilation}"
    return f"{in_channels}x{h}x{w}", [spec]


def load_chain(path: str | Path) -> tuple[str | None, list]:
    """Read a chain from a YAML file.

    The file holds `input` (optional, `CxHxW`) and `layers`, a list whose items are spec strings, repeats
    and residual blocks (checked here, so a bad file is refused before any arithmetic):

        input: 3x56x56
        layers:
          - conv:out=64,k=3,p=1
          - repeat: 2
            layers:
              - residual: [conv:out=64,k=3,p=1, bn, relu, conv:out=64,k=3,p=1, bn]
              - relu

    Args:
        path: the YAML file.

    Returns:
        The input text (None when the file has none) and the list of items, as written.

    Raises:
        ConfigError: the file is missing or not YAML, has an unknown key, or an item is malformed; the
            message names the file.
    """
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys 'input' and 'layers'")
    for key in data:
        if key not in ("input", "layers"):
            raise ConfigError(f"{path}: unknown key {key!r}; a chain file has 'input' and 'layers'")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{path}: 'layers' must be a non-empty list of specs like 'conv:out=64,k=3'")
    try:
        parse_items(layers)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.args[0]}") from None
    shape = data.get("input")
    if shape is not None:
        parse_input(str(shape), f"{path}: input")  # refuse it here, where the message can name the file
    return (None if shape is None else str(shape)), layers

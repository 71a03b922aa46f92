"""Shape arithmetic for whole CNNs, by PyTorch's own rules: conv, pools, batch norm, activations, linear heads,
adaptive pools, upsampling, repeats and residual blocks. The manual is docs/conv-shape.md.

Pure Python on purpose: the `conv-shape` calculator must answer without importing torch, numpy or pandas.

    >>> from cnnexp.shapes import chain_shape
    >>> net = chain_shape("3x224x224", ["conv:out=64,k=7,s=2,p=3", "maxpool:k=3,s=2,p=1"])
    >>> net.output, net.params
    ((64, 56, 56), 9472)
    >>> net.layers[-1].receptive_field, net.layers[-1].jump
    ((11, 11), (4, 4))

The package runs one way: `types` (shapes, rows, integer rules) <- `layers` (each kind's rules) <- `parse`
(specs, blocks, chain files) <- `chain` (the walk). Whatever PyTorch refuses, at construction or at forward
on that input, `chain_shape` refuses with a `ShapeError` (or a `ConfigError` for a malformed spec) naming the
layer by its path.
"""
from cnnexp.shapes.chain import chain_shape, shape_from_flags
from cnnexp.shapes.layers import KINDS, Layer
from cnnexp.shapes.parse import MAX_LAYERS, Repeat, Residual, load_chain, parse_items, parse_layer, single_conv
from cnnexp.shapes.types import (
                                 DTYPES,
                                 INT64_MAX,
                                 MAX_NUMEL,
                                 ChainShape,
                                 LayerShape,
                                 Pair,
                                 Shape,
                                 parse_input,
                                 parse_int,
                                 parse_pair,
)

__all__ = ["chain_shape", "shape_from_flags", "KINDS", "Layer", "MAX_LAYERS", "Repeat", "Residual", "load_chain",
           "parse_items", "parse_layer", "single_conv", "DTYPES", "INT64_MAX", "MAX_NUMEL", "ChainShape",
           "LayerShape", "Pair", "Shape", "parse_input", "parse_int", "parse_pair"]

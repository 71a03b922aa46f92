"""cnnexp: an experiment runner for the residual gradient study.

    $ cnnexp sweep configs/init.yaml          # run a YAML sweep, write results/init.csv
    >>> import cnnexp
    >>> df = cnnexp.load_results("results/init.csv")   # doctest: +SKIP
    >>> fits = cnnexp.fit(df, "small_init")            # doctest: +SKIP
    >>> net = cnnexp.build_net("resnet18")             # doctest: +SKIP

The public names are imported lazily, so `import cnnexp` (and the `conv-shape` calculator) stays free of
torch and pandas until they are needed.
"""
__version__ = "0.1.0"

_PUBLIC = {
    "load_results": "cnnexp.analysis",
    "fit": "cnnexp.fit",
    "conv2d_numpy": "cnnexp.conv",
    "build_net": "cnnexp.engine.net",
}
__all__ = [*_PUBLIC, "__version__"]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # the lazily imported names too (dir(cnnexp), tab completion)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'cnnexp' has no attribute {name!r}")

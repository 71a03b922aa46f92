"""cnnexp.plot: the lines drawn are pandas' means over seeds, the layout follows the data, the files are real
images, and title and legend fit inside the figure (measured by matplotlib's own renderer)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from cnnexp.errors import ResultsError
from cnnexp.plot import MAX_LINES, Layout, _held_value, _scale, choose_layout, figure, plot_results, sweep_figure
from cnnexp.schema import BLOCKS, LAYER_METRICS, METRICS
from tests.test_analysis import make_rows, write_results

DEPTHS = (1, 2, 3, 5, 8, 12, 20, 30, 50)


def depth_rows() -> list[dict]:
    """The shape of configs/depth.yaml: four blocks, two small_init, nine depths, three seeds."""
    return make_rows(blocks=BLOCKS, small_inits=(1e-2, 1e-1), extra={"depth": DEPTHS})


def layer_rows(depths=(1, 2, 3, 5, 8)) -> list[dict]:
    """The shape of a per-layer file: block_index after the axes, 0 .. depth-1 for each run."""
    rows = make_rows(blocks=BLOCKS, small_inits=(1e-2, 1e-1),
                     extra={"depth": depths, "block_index": range(max(depths))})
    rows = [r for r in rows if r["block_index"] < r["depth"]]
    rng = np.random.default_rng(1)
    return [{**{k: v for k, v in r.items() if k not in METRICS}, **{m: float(rng.lognormal()) for m in LAYER_METRICS}}
            for r in rows]


def fits_inside(fig) -> None:
    """The title and the legend lie inside the figure, and the legend covers no panel."""
    FigureCanvasAgg(fig).draw()
    page = fig.bbox
    title = fig.get_suptitle() and fig._suptitle.get_window_extent()
    [legend] = fig.legends
    box = legend.get_window_extent()
    for part in (title, box):
        assert page.x0 <= part.x0 and part.x1 <= page.x1 and page.y0 <= part.y0 and part.y1 <= page.y1, (part, page)
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "init.csv", make_rows(small_inits=(1e-2, 1e-4, 1e-6)))


def test_each_line_is_the_mean_over_seeds_and_the_band_spans_min_to_max(results):
    df = pd.read_csv(results)
    fig = figure(results, "small_init", ["x_grad_norm"])
    [ax] = fig.axes
    assert [line.get_label() for line in ax.lines] == ["plain", "residual"]
    for line, band in zip(ax.lines, ax.collections):
        rows = df[df["block"] == line.get_label()].groupby("small_init")["x_grad_norm"]
        np.testing.assert_array_equal(line.get_xdata(), [1e-6, 1e-4, 1e-2])
        np.testing.assert_array_equal(line.get_ydata(), rows.mean().to_numpy())
        corners = band.get_paths()[0].vertices[:, 1]
        assert corners.min() == rows.min().min() and corners.max() == rows.max().max()
    assert ax.get_xscale() == "log"


def test_repeated_y_and_facet_give_a_grid_of_panels(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows(extra={"depth": [1, 2, 3]}))
    fig = figure(path, "small_init", ["loss", "w_norm"], facet="depth")
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["depth=1", "depth=2", "depth=3"]
    assert [fig.axes[i].get_ylabel() for i in (0, 3)] == ["loss", "w_norm"]


def test_another_varying_axis_gets_its_own_lines(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows(extra={"depth": [1, 2, 3], "activation": ["relu", "tanh"]}))
    fig = figure(path, "small_init", ["loss"])  # depth, with more values, takes the panels
    assert [ax.get_title() for ax in fig.axes] == ["depth=1", "depth=2", "depth=3"]
    assert [line.get_label() for line in fig.axes[0].lines] == [
        "plain, activation=relu", "plain, activation=tanh", "residual, activation=relu", "residual, activation=tanh"]
    colours = [line.get_color() for line in fig.axes[0].lines]
    assert colours[0] == colours[1] != colours[2] == colours[3]  # the colour is the block's


# --- the layout chosen from the data ---------------------------------------------------------------


@pytest.mark.parametrize("rows, asked, want", [
    # configs/init.yaml: only small_init varies
    (lambda: make_rows(small_inits=(1e-2, 1e-4, 1e-6)), {},
     Layout("small_init", ("x_grad_norm", "param_grad_norm"), None, ("block",))),
    # configs/depth.yaml: depth has the most values, small_init (2) takes the panels
    (depth_rows, {}, Layout("depth", ("x_grad_norm", "param_grad_norm"), "small_init", ("block",))),
    # a tie goes to small_init; the other axis, with few values, takes the panels
    (lambda: make_rows(small_inits=(1e-2, 1e-3, 1e-4), extra={"d": [8, 16, 32]}), {},
     Layout("small_init", ("x_grad_norm", "param_grad_norm"), "d", ("block",))),
    # seed never is x, even with the most values
    (lambda: make_rows(seeds=range(6)), {}, Layout("small_init", ("x_grad_norm", "param_grad_norm"), None, ("block",))),
    # an axis with too many values for panels gets lines while they are few enough, else is held
    (lambda: make_rows(blocks=("residual",), small_inits=(1e-2,), extra={"depth": range(1, 7), "d": range(8, 13)}),
     {"ys": "loss"}, Layout("depth", ("loss",), None, ("block", "d"))),
    (lambda: make_rows(small_inits=(1e-2,), extra={"depth": range(1, 7), "d": range(8, 13)}), {"ys": "loss"},
     Layout("depth", ("loss",), None, ("block",), (("d", 12, 5),))),
    # two axes fit the panels: the one with more values takes them (the first in the file on a tie)
    (lambda: make_rows(extra={"depth": range(1, 7), "alpha_init": [0.0, 0.5, 1.0]}), {"ys": "loss"},
     Layout("depth", ("loss",), "alpha_init", ("block", "small_init"))),
    (lambda: make_rows(extra={"depth": range(1, 7), "activation": ["relu", "tanh"]}), {"ys": "loss"},
     Layout("depth", ("loss",), "small_init", ("block", "activation"))),
    (lambda: make_rows(extra={"depth": range(1, 7), "activation": ["relu", "tanh"]}),
     {"ys": "loss", "facet": "activation"}, Layout("depth", ("loss",), "activation", ("block", "small_init"))),
    # a per-layer file: x is block_index, y its output gradient, and depth is held where x is widest
    (layer_rows, {}, Layout("block_index", ("out_grad_norm",), "small_init", ("block",), (("depth", 8, 5),))),
    # what is asked for is kept
    (depth_rows, {"x": "small_init", "ys": ["loss"], "facet": "block"},
     Layout("small_init", ("loss",), "block", ("block",), (("depth", 50, 9),))),
])
def test_choose_layout(rows, asked, want):
    assert choose_layout(pd.DataFrame(rows()), **asked) == want


def test_held_value_has_the_most_x_values_and_the_largest_on_a_tie():
    df = pd.DataFrame({"depth": [1, 2, 2, 3, 3], "x": [0, 0, 1, 0, 1]})
    assert _held_value(df, "depth", "x") == 3
    assert _held_value(df[df["depth"] < 3], "depth", "x") == 2


def test_held_axis_lines_are_pandas_means_at_the_held_value(tmp_path):
    path = write_results(tmp_path / "depth.layers.csv", layer_rows())
    df = pd.read_csv(path)
    fig = figure(path, "block_index", ["out_grad_norm"])
    assert [ax.get_title() for ax in fig.axes] == ["small_init=0.01", "small_init=0.1"]
    assert "depth=8 only (of 5 values)" in fig.get_suptitle()
    for ax, small_init in zip(fig.axes, (1e-2, 1e-1)):
        assert [line.get_label() for line in ax.lines] == list(BLOCKS)
        for line in ax.lines:
            rows = df[(df["block"] == line.get_label()) & (df["small_init"] == small_init) & (df["depth"] == 8)]
            want = rows.groupby("block_index")["out_grad_norm"].mean()
            np.testing.assert_array_equal(line.get_xdata(), want.index.to_numpy())
            np.testing.assert_array_equal(line.get_ydata(), want.to_numpy())


@pytest.mark.parametrize("name, rows, args", [
    ("depth.csv", depth_rows, {}),
    ("depth.layers.csv", layer_rows, {"x": "block_index", "y": "out_grad_norm"}),
    ("init.csv", lambda: make_rows(small_inits=(1e-2, 1e-4, 1e-6)), {}),
])
def test_sweep_shaped_figures_are_drawn_without_warnings_and_a_short_legend(tmp_path, name, rows, args):
    path = write_results(tmp_path / name, rows())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "constrained_layout not applied"
        out = plot_results(path, **args, out=tmp_path / "f.png")
        fig = figure(path, args.get("x"), args.get("y"))
        fits_inside(fig)
    [legend] = fig.legends
    assert 1 <= len(legend.get_texts()) <= MAX_LINES
    assert all(len(ax.lines) <= MAX_LINES for ax in fig.axes)
    assert imread(out).shape[0] > 200


def test_a_long_title_is_wrapped_to_the_figure_width(tmp_path):
    rows = [{**r, "activation": "a_rather_long_activation_name", "dtype": "float64"}
            for r in make_rows(small_inits=(1e-2, 1e-4, 1e-6))]
    path = write_results(tmp_path / "a_results_file_with_a_long_descriptive_name.csv", rows)
    fig = figure(path)
    title = fig.get_suptitle()
    assert title.count("\n") >= 2 and "alpha_init=0.0" in title and title.startswith("a_results_file")
    fits_inside(fig)


@pytest.mark.parametrize("values, scale", [
    ([1e-6, 1e-2], "log"), ([1.0, 100.0], "log"), ([1.0, 99.0], "linear"), ([0.0, 1e-6, 1.0], "log"),
    ([0.0, 1.0, 2.0], "linear"),
    ([-1e-3, 10.0], "linear"), ([1.0, np.nan, 1e3], "log"),
])
def test_log_scale_for_positive_values_spanning_two_decades(values, scale):
    assert _scale(pd.Series(values)) == scale


def test_png_is_written_and_not_blank(results, tmp_path):
    out = plot_results(results, "small_init", "x_grad_norm", out=tmp_path / "fig.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    image = imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".PNG", b"\x89PNG")])
def test_format_follows_the_extension(results, tmp_path, suffix, magic):
    out = plot_results(results, "small_init", "loss", out=tmp_path / f"fig{suffix}")
    assert out.read_bytes().startswith(magic)


def test_default_output_is_beside_the_csv(results):
    assert plot_results(results, "small_init", ["loss"]) == results.with_name("init_loss_vs_small_init.png")
    assert sweep_figure(results) == results.with_name("init.png") and results.with_name("init.png").stat().st_size


@pytest.mark.parametrize("x, y, facet, out, message", [
    ("small_init", "speed", None, "f.png", "--y speed: no such column"),
    ("width", "loss", None, "f.png", "--x width: no such column"),
    ("small_init", "block", None, "f.png", "column block is not numeric"),
    ("small_init", "loss", "colour", "f.png", "--facet colour: no such column"),
    ("small_init", "loss", None, "f.jpeg", "unknown format '.jpeg'"),
])
def test_bad_requests_are_refused_before_writing(results, tmp_path, x, y, facet, out, message):
    with pytest.raises(ResultsError, match=message):
        plot_results(results, x, y, facet=facet, out=tmp_path / out)
    assert not (tmp_path / out).exists()

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
from cnnexp.plot import (
    MAX_LINES,
    MAX_PANELS,
    Layout,
    _held_value,
    _scale,
    choose_layout,
    figure,
    plot_results,
    sweep_figure,
)
from cnnexp.schema import BLOCKS, LAYER_METRICS
from cnnexp.schema import STEP_METRICS as METRICS
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
    ("small_init", "speed", None, "f.png", "y speed: no such column"),
    ("width", "loss", None, "f.png", "x width: no such column"),
    ("small_init", "block", None, "f.png", "column block is not numeric"),
    ("small_init", "loss", "colour", "f.png", "facet colour: no such column"),
    ("small_init", "loss", None, "f.jpeg", "unknown format '.jpeg'"),
])
def test_bad_requests_are_refused_before_writing(results, tmp_path, x, y, facet, out, message):
    with pytest.raises(ResultsError, match=message):
        plot_results(results, x, y, facet=facet, out=tmp_path / out)
    assert not (tmp_path / out).exists()


# --- what the figure says about its data -------------------------------------------------------------


def test_seed_on_x_draws_each_run_with_no_mean_and_no_band(results):
    df = pd.read_csv(results)
    fig = figure(results, "seed", ["loss"], facet="small_init")
    title = fig.get_suptitle()
    assert "mean over" not in title and "band" not in title and "one run per point (seed on x)" in title
    for ax, small_init in zip(fig.axes, pd.unique(df["small_init"])):
        assert not ax.collections  # no band
        for line in ax.lines:
            want = df[(df["block"] == line.get_label()) & (df["small_init"] == small_init)].sort_values("seed")
            np.testing.assert_array_equal(line.get_xdata(), want["seed"])
            np.testing.assert_array_equal(line.get_ydata(), want["loss"])


def test_one_seed_draws_no_band(tmp_path):
    path = write_results(tmp_path / "r.csv", make_rows(seeds=(4,), small_inits=(1e-2, 1e-4, 1e-6)))
    fig = figure(path, "small_init", ["loss"])
    assert "band" not in fig.get_suptitle() and not fig.axes[0].collections
    three = write_results(tmp_path / "three.csv", make_rows(seeds=(4, 5, 6)))
    assert "mean over 3 seeds; band: min to max" in figure(three, "small_init", ["loss"]).get_suptitle()


def test_coinciding_lines_stay_visible_and_keep_their_data(tmp_path):
    rows = make_rows(blocks=("plain", "residual", "prenorm"))
    residual = {(r["small_init"], r["seed"]): r for r in rows if r["block"] == "residual"}
    rows = [{**r, **{m: residual[r["small_init"], r["seed"]][m] for m in METRICS}} if r["block"] == "prenorm" else r
            for r in rows]
    fig = figure(write_results(tmp_path / "r.csv", rows), "small_init", ["x_grad_norm"])
    plain, res, pre = fig.axes[0].lines
    np.testing.assert_array_equal(res.get_ydata(), pre.get_ydata())  # the data is not moved
    assert res.get_linewidth() > pre.get_linewidth() > 0 and res.get_markersize() > pre.get_markersize()
    assert res.get_zorder() < pre.get_zorder() and plain.get_linewidth() == pre.get_linewidth()
    assert "x_grad_norm: residual = prenorm" in fig.get_suptitle().replace("\n", " ")


def facets_apart(tmp_path, scale: float):
    """Two facets (depth 1, 2) whose loss lies around 1 and around `scale`."""
    rows = make_rows(small_inits=(1e-2, 1e-4, 1e-6), extra={"depth": [1, 2]})
    rng = np.random.default_rng(0)
    rows = [{**r, "loss": float(rng.uniform(1, 50) * (scale if r["depth"] == 2 else 1.0))} for r in rows]
    return write_results(tmp_path / "r.csv", rows)


@pytest.mark.parametrize("scale, shared", [(1e-150, False), (1e-2, True)])
def test_facets_many_decades_apart_get_their_own_y_range(tmp_path, scale, shared):
    path = facets_apart(tmp_path, scale)
    df = pd.read_csv(path)
    fig = figure(path, "small_init", ["loss"], facet="depth")
    FigureCanvasAgg(fig).draw()
    first, second = fig.axes
    for ax, depth in zip(fig.axes, (1, 2)):
        low, high = ax.get_ylim()
        values = df.loc[df["depth"] == depth, "loss"]
        assert low <= values.min() and values.max() <= high
    assert (first.get_ylim() == second.get_ylim()) == shared
    if not shared:  # each panel spans about its own two decades, not 150
        assert all(np.log10(ax.get_ylim()[1] / ax.get_ylim()[0]) < 5 for ax in fig.axes)


def test_zeros_on_a_log_axis_are_counted_and_located_in_the_title(tmp_path):
    rows = make_rows(small_inits=(1e-2, 1e-4, 1e-6))
    rows = [{**r, "x_grad_norm": 0.0} if r["block"] == "plain" and r["small_init"] == 1e-6 else r for r in rows]
    rows[0]["x_grad_norm"] = float("nan")
    path = write_results(tmp_path / "r.csv", rows)
    df = pd.read_csv(path)
    title = figure(path, "small_init", ["x_grad_norm"]).get_suptitle().replace("\n", " ")
    zeros = int((df["x_grad_norm"] == 0).sum())
    assert zeros == 3
    assert f"not drawn (log axis): x_grad_norm = 0 (underflow) in {zeros} runs, plain at small_init=1e-06" in title
    assert f"x_grad_norm = nan in 1 run, plain at small_init={rows[0]['small_init']}" in title


def test_dpi_scales_the_raster_and_is_checked_before_writing(results, tmp_path):
    small = imread(plot_results(results, "small_init", "loss", out=tmp_path / "a.png", dpi=50))
    large = imread(plot_results(results, "small_init", "loss", out=tmp_path / "b.png", dpi=100))
    assert abs(large.shape[0] - 2 * small.shape[0]) <= 2 and abs(large.shape[1] - 2 * small.shape[1]) <= 2
    for dpi, message in [(0, "must be a positive number"), (float("nan"), "must be a positive number"),
                         (20_000, "pixels, over")]:
        with pytest.raises(ResultsError, match=f"dpi .*{message}"):
            plot_results(results, "small_init", "loss", out=tmp_path / "c.png", dpi=dpi)
    assert not (tmp_path / "c.png").exists()


def test_a_facet_with_thousands_of_values_is_refused_before_drawing(tmp_path):
    path = write_results(tmp_path / "depth.layers.csv", layer_rows())
    n = pd.read_csv(path)["out_grad_norm"].nunique()
    with pytest.raises(ResultsError, match=f"facet out_grad_norm: {n:,} values .* would draw {n:,} panels, more "
                                           f"than {MAX_PANELS}"):
        plot_results(path, facet="out_grad_norm", out=tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_an_empty_facet_asks_for_no_panels(tmp_path):
    path = write_results(tmp_path / "depth.csv", depth_rows())
    assert choose_layout(path, facet="").facet is None and choose_layout(path).facet == "small_init"
    fig = figure(path, ys=["loss"], facet="")
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == ""


def test_an_integer_axis_gets_integer_ticks(results):
    fig = figure(results, "seed", ["loss"], facet="")
    FigureCanvasAgg(fig).draw()
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


# --- the figures in docs/ come from the commands written beside them --------------------------------------


def test_docs_init_png_is_what_the_readme_commands_draw(tmp_path):
    """README: `cnnexp sweep configs/init.yaml`, then `cnnexp plot results/init.csv --out docs/init.png`.
    The figure was drawn on the underflow-free norms (cnnexp.norms); without them this test cannot hold."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("cnnexp.norms", reason="docs/init.png was drawn on the underflow-free norms")
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "cnnexp plot results/init.csv --out docs/init.png" in readme
    env = {**os.environ, "PYTHONPATH": str(root)}
    (tmp_path / "results").mkdir()
    (tmp_path / "docs").mkdir()
    for args in (["sweep", str(root / "configs" / "init.yaml"), "--out", "results/init.csv"],
                 ["plot", "results/init.csv", "--out", "docs/init.png"]):
        subprocess.run([sys.executable, "-m", "cnnexp", *args], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    np.testing.assert_array_equal(imread(tmp_path / "docs" / "init.png"), imread(root / "docs" / "init.png"))


def test_many_ys_take_no_automatic_facet_beyond_the_panel_bound(tmp_path, monkeypatch):
    import cnnexp.plot

    rows = make_rows(small_inits=(1e-1, 1e-2, 1e-3, 1e-4), extra={"depth": [1, 2, 3]})  # x: small_init
    path = write_results(tmp_path / "r.csv", rows)
    assert choose_layout(path, ys=list(METRICS[:3])).facet == "depth"  # 3 x 3 = 9 panels
    monkeypatch.setattr(cnnexp.plot, "MAX_PANELS", 8)
    assert choose_layout(path, ys=list(METRICS[:2])).facet == "depth"  # 6 panels
    assert choose_layout(path, ys=list(METRICS[:3])).facet is None  # 9 panels would be too many
    with pytest.raises(ResultsError, match="facet depth: 3 values .* would draw 9 panels, more than 8"):
        choose_layout(path, ys=list(METRICS[:3]), facet="depth")


def _net_layer_rows():
    """A per-layer file of networks as the engine writes it: two seeds, both blocks, two inits."""
    from cnnexp.config import RunConfig
    from cnnexp.engine.net import probe_net
    from cnnexp.nets import net_from_items

    net = net_from_items("n", "2x6x6", ["conv:out=2,k=3,p=1", "relu", {
        "residual": ["conv:out=2,k=3,p=1", "relu"], "shortcut": ["conv:out=2,k=1"]}, "flatten", "linear:out=2"])
    rows = []
    for init, small_init in (("small", 0.1), ("kaiming", None)):
        for seed in (0, 1):
            config = RunConfig(net=net, input="2x6x6", batch=2, seed=seed, init=init, small_init=small_init)
            for result in probe_net(config, ("plain", "residual")):
                rows += result.layer_rows()
    return pd.DataFrame(rows)[["block", "net", "input", "batch", "init", "small_init", "bn", "zero_residual",
                                "dtype", "seed", "path", "layer", "act_sq_mean", "act_var", "out_grad_norm",
                                "weight_norm", "weight_grad_norm", "branch_var"]].assign(net="n")


def test_layer_frame_numbers_the_main_path_alike_for_the_twin_and_the_network():
    from cnnexp.plot import LAYER_INDEX, layer_frame

    df = _net_layer_rows()
    frame, facet = layer_frame(df)
    assert facet == "init (small_init), bn"
    assert set(frame[facet]) == {"small (0.1), on", "kaiming, on"}
    for _, run in frame.groupby(["block", facet, "seed"]):
        assert list(run[LAYER_INDEX]) == [1, 2, 3, 4, 5]  # conv, relu, the block's output, flatten, linear
    main = df[~df["path"].str.contains(r"\.(?:residual|shortcut)\.")]
    block = main[(main["block"] == "residual") & (main["init"] == "small") & (main["seed"] == 0)]
    assert list(block["path"]) == ["1", "2", "3", "4", "5"]
    mine = frame[(frame["block"] == "residual") & (frame[facet] == "small (0.1), on") & (frame["seed"] == 0)]
    assert list(mine["act_var"]) == list(block["act_var"])


def test_plot_layers_draws_a_panel_per_statistic_and_setting(tmp_path):
    from cnnexp.plot import LAYER_INDEX, LAYER_Y, draw, layer_frame, plot_layers

    out = plot_layers(_net_layer_rows(), out=tmp_path / "layers.png")
    assert out == tmp_path / "layers.png" and imread(out).size > 0
    frame, facet = layer_frame(_net_layer_rows())
    fig = draw(frame, choose_layout(frame, LAYER_INDEX, LAYER_Y, facet))
    assert len(fig.axes) == 3 * 2  # a row per statistic, a column per setting (small (0.1), kaiming)
    assert [ax.get_yscale() for ax in fig.axes] == ["log"] * 6


def test_plot_layers_refuses_a_file_that_is_not_a_networks_per_layer_file(results):
    from cnnexp.plot import plot_layers

    with pytest.raises(ResultsError, match="signal propagation plots need the per-layer file of a sweep of networks"):
        plot_layers(results)


def test_a_curve_file_plots_its_loss_and_a_training_sweep_its_steps_to_fit():
    steps = pd.DataFrame([{"block": b, "d": 8, "seed": s, "step": t, "loss": 1.0 / (t + 1), "x_grad_norm": 1.0,
                           "param_grad_norm": 1.0} for b in ("plain", "residual") for s in (0, 1) for t in range(5)])
    layout = choose_layout(steps)
    assert (layout.x, layout.ys) == ("step", ("loss",))
    trained = pd.DataFrame([{"block": b, "small_init": c, "seed": 0, "steps": 100, "loss": 1.0, "x_grad_norm": 1.0,
                             "param_grad_norm": 1.0, "steps_to_fit": 10.0 * i}
                            for b in ("plain", "residual") for i, c in enumerate((0.1, 0.01, 0.001))])
    assert choose_layout(trained).ys == ("steps_to_fit",)
    never = trained.assign(steps_to_fit=float("nan"))  # no run fitted: the study's finding, as before
    assert choose_layout(never).ys == ("x_grad_norm", "param_grad_norm")


def test_a_line_of_many_points_marks_only_some_of_them():
    many = pd.DataFrame([{"block": "plain", "seed": 0, "step": t, "loss": 1.0 + t} for t in range(60)])
    fig = figure(many, "step", "loss")
    [line] = fig.axes[0].get_lines()
    assert line.get_markevery() == 5

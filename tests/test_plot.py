"""cnnexp.plot: the lines drawn are pandas' means over seeds, the files are real images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from cnnexp.errors import ResultsError
from cnnexp.plot import _scale, figure, plot_results, sweep_figure
from tests.test_analysis import make_rows, write_results


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
    path = write_results(tmp_path / "r.csv", make_rows(extra={"activation": ["relu", "tanh"]}))
    [ax] = figure(path, "small_init", ["loss"]).axes
    assert [line.get_label() for line in ax.lines] == [
        "plain, activation=relu", "plain, activation=tanh", "residual, activation=relu", "residual, activation=tanh"]


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
    ("small_init", "loss", None, "f.jpeg", "unknown figure format '.jpeg'"),
])
def test_bad_requests_are_refused_before_writing(results, tmp_path, x, y, facet, out, message):
    with pytest.raises(ResultsError, match=message):
        plot_results(results, x, y, facet=facet, out=tmp_path / out)
    assert not (tmp_path / out).exists()

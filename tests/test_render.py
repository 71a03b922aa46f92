"""Rich renderings: numbers are never cut, whatever the console's width."""
import io

from rich.console import Console

from cnnexp import render
from cnnexp.config import RunConfig
from cnnexp.engine.reference import probe
from cnnexp.sweep import side_by_side


def rendered(renderable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, markup=False)
    render.show(console, renderable)
    return console.file.getvalue()


def test_a_table_wider_than_the_console_is_printed_whole():
    rows = [["0.1234567890123", "x" * 30, "1e-300"]]
    text = rendered(render._table("a title longer than the console is wide, all of it", ["a", "b", "c"], rows), 20)
    for cell in (*rows[0], "a title longer than the console is wide, all of it"):
        assert cell in text


def test_pairs_table_shows_each_block_and_the_ratio():
    results = probe(RunConfig(d=8, batch=2, small_init=1e-2, seed=0), ("plain", "residual"))
    [pair] = side_by_side([r.row() for r in results])
    text = rendered(render.pairs_table([pair], title="t"), 200)
    plain, residual = (r.metrics["x_grad_norm"] for r in results)
    assert f"{plain:.4g}" in text and f"{residual:.4g}" in text and f"{residual / plain:.3g}x" in text
    assert "small_init=0.01" in text  # one value across the rows: in the title, exactly


def test_configuration_values_are_shown_exactly():
    assert render._exact(0.1 + 0.2) == "0.30000000000000004" and render._exact(float("nan")) == render.MISSING
    assert render._exact("relu") == "relu" and render._exact(3) == "3"


def test_chain_table_indents_block_rows_and_shows_memory():
    from cnnexp.shapes import chain_shape

    block = {"residual": ["conv:out=4,k=3,p=1", "bn"], "shortcut": ["conv:out=4,k=1"]}
    net = chain_shape("2x8x8", [{"repeat": 2, "layers": [block, "relu"]}, "flatten", "linear:out=3"],
                      dtype="float16")
    text = rendered(render.chain_table(net), 200)
    lines = text.splitlines()
    row = next(line for line in lines if "1.1.1.residual.1" in line)
    assert row.startswith("     1.1.1.residual.1 ")  # the table's edge, then two spaces a level
    assert row.split()[-3:] == ["256", "512", "B"]  # 4 x 8 x 8 elements, 2 bytes each
    assert any(line.lstrip().startswith("1.1.1 ") and "residual (total)" in line for line in lines)
    assert any("repeat x2 (total)" in line for line in lines)
    total = next(line for line in lines if " total " in line and "(total)" not in line)
    assert total.split()[1:2] == ["3"] and f"{net.params:,}" in total  # a flat output prints as N
    assert "float16" in lines[2]  # the bytes column is named by the dtype


def test_print_chain_states_peak_and_torchinfo_figure():
    import io

    from rich.console import Console

    from cnnexp.shapes import chain_shape

    net = chain_shape("1x4x4", ["conv:out=8,k=1", "relu", "maxpool:k=2"])  # peak: relu's 128 + 128 floats
    console = Console(file=io.StringIO(), width=300, markup=False)
    render.print_chain(console, net, single=False)
    text = console.file.getvalue()
    assert "peak 1.02 kB alive at once in an inference forward (at 2)" in text
    assert "torchinfo's forward/backward pass size: 1.02 kB" in text  # 2 x 128 floats of the conv
    assert "written" in text and "A fully-connected layer" in text


def test_a_training_table_shows_each_blocks_initial_and_final_loss_and_steps_to_fit():
    config = RunConfig(d=6, batch=4, small_init=1e-2, seed=0, depth=2, dtype="float64", steps=40, lr=0.4,
                       target="identity")
    results = probe(config, ("plain", "residual"))
    [pair] = side_by_side([r.row() for r in results])
    text = rendered(render.pairs_table([pair], title="t"), 200)
    plain, residual = (r.metrics for r in results)
    assert plain["steps_to_fit"] is None and residual["steps_to_fit"] == 0  # y = x: the residual starts there
    for heading in ("initial loss", "final loss", "steps_to_fit"):
        assert heading in text
    for m in ("initial_loss", "loss"):
        assert f"{plain[m]:.4g}" in text and f"{residual[m]:.4g}" in text
    row = text.splitlines()[-2] if text.splitlines()[-1].strip() == "" else text.splitlines()[-1]
    assert row.split()[-2:] == [render.MISSING, "0"]  # never reached, and at once
    assert "x_grad_norm" not in text and "target='identity'" not in text and "target=identity" in text


def test_configuration_floats_show_the_fewest_digits_that_keep_them_apart():
    from cnnexp.config import logspace
    from cnnexp.render import _column

    values = logspace(-3, -1, 5)
    assert _column(values) == ["0.001", "0.00316228", "0.01", "0.0316228", "0.1"]
    close = [0.1, 0.1 + 1e-12]  # distinct only past 6 digits: as many digits as that takes
    shown = _column(close)
    assert shown[0] != shown[1]
    assert _column([64, "relu", None]) == ["64", "relu", ""]


def test_spreads_of_a_hundred_percent_or_more_are_whole_numbers():
    from cnnexp.render import _percent

    assert (_percent(160.4), _percent(99.4), _percent(99.6), _percent(2.34)) == ("160", "99", "100", "2.3")


def test_a_split_table_repeats_every_key_column_keeps_groups_and_its_footnote_whole(monkeypatch):
    import pandas as pd
    from rich.console import Console

    rows = [{"block": b, "depth": d, "metric": "x_grad_norm", "x": "small_init", "law": "power", "slope": 4.0 * d,
             "slope_low": 3.9, "slope_high": 4.1, "intercept": 0.0, "r2": 0.99, "n": 15, "excluded": 0,
             "theory": 4.0 * d, "theory_kind": "exact", "holds": True, "max_residual": 0.1, "excluded_why": "",
             "limit_ratio": float("nan")} for d in (1, 2) for b in ("plain", "residual")]
    fits = pd.DataFrame(rows)
    [table] = render.fit_tables(fits)
    console = Console(file=io.StringIO(), width=60, force_terminal=False)
    parts = render._split_table(console, table, 60)
    assert len(parts) > 1
    assert all([str(c.header) for c in p.columns[:2]] == ["block", "depth"] for p in parts)
    wide = Console(file=io.StringIO(), width=200)
    pairs_like = render._table("t", ["k", "metric\nplain", "\nresidual", "\nratio", "other\nplain", "\nresidual",
                                     "\nratio"], [["1", "a" * 12, "b" * 12, "c" * 12, "d" * 12, "e" * 12, "f" * 12]])
    groups = [[str(c.header) for c in p.columns[1:]] for p in render._split_table(wide, pairs_like, 50)]
    assert all(len(g) % 3 == 0 for g in groups)  # a metric's blocks and ratio are never parted
    monkeypatch.setenv("COLUMNS", "60")  # (a file is split only when COLUMNS asks for a width)
    out = Console(file=io.StringIO(), width=60)
    [table] = render.fit_tables(fits)
    render.show(out, table)
    text = out.file.getvalue()
    assert "least squares over the seeds pooled; interval: slope +- t(0.975, n-2) * se; max" in " ".join(
        text.split()) and max(map(len, text.splitlines())) <= 60

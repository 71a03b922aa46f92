"""The column contract: names, order, defaults that pass their own rules."""
from cnnexp.schema import AXES, COLUMNS, CONFIG_COLUMNS, LAYER_COLUMNS, METRICS


def test_the_csv_columns_keep_their_contract_order():
    assert COLUMNS[:5] == ("block", "d", "batch", "small_init", "seed")
    assert COLUMNS[-len(METRICS):] == METRICS
    assert METRICS[:5] == ("loss", "x_grad_norm", "a1_grad_norm", "w_norm", "param_grad_norm")
    assert LAYER_COLUMNS[:len(CONFIG_COLUMNS) + 1] == (*CONFIG_COLUMNS, "block_index")
    assert len(set(COLUMNS)) == len(COLUMNS)


def test_every_default_obeys_its_own_axis_rule():
    for axis in AXES:
        assert isinstance(axis.default, axis.kind)
        assert axis.check(axis.default) is None, axis.name
        assert not axis.choices or axis.default in axis.choices


def test_files_of_sweeps_that_do_not_train_keep_the_columns_they_always_had():
    from cnnexp.schema import CURVE_COLUMNS, TRAINING_AXES, columns

    old = ("block", "d", "batch", "small_init", "seed", "depth", "activation", "dtype", "alpha_init")
    at_init, training = columns(False), columns(True)
    assert at_init.config == old and at_init.results == (*old, *METRICS[:6])
    assert at_init.layers == (*old, "block_index", "a1_grad_norm", "fc1_grad_norm", "fc2_grad_norm", "out_grad_norm")
    assert TRAINING_AXES == ("steps", "lr", "target")
    assert training.results == COLUMNS and training.config == CONFIG_COLUMNS
    assert COLUMNS[-2:] == ("initial_loss", "steps_to_fit") and CONFIG_COLUMNS[-3:] == TRAINING_AXES
    assert training.curve == at_init.curve == CURVE_COLUMNS == (*CONFIG_COLUMNS, "step", *METRICS[:6])


def test_block_kinds_are_one_table_in_the_study_order():
    from cnnexp.schema import BLOCK_KIND, BLOCK_KINDS, BLOCKS

    assert BLOCKS == ("plain", "residual", "rezero", "prenorm")  # the canonical order of rows
    assert [k.name for k in BLOCK_KINDS] == list(BLOCKS) == list(BLOCK_KIND)


def test_each_kind_computes_its_formula():
    from cnnexp.schema import BLOCK_KIND

    x, f, alpha = 3.0, 0.5, 0.25
    assert BLOCK_KIND["plain"].out(x, f, alpha) == f
    assert BLOCK_KIND["residual"].out(x, f, alpha) == x + f
    assert BLOCK_KIND["rezero"].out(x, f, alpha) == x + alpha * f
    assert BLOCK_KIND["prenorm"].out(x, f, alpha) == x + f  # (its F saw LayerNorm(x))
    assert [k.name for k in BLOCK_KIND.values() if k.normalised] == ["prenorm"]
    assert [k.name for k in BLOCK_KIND.values() if k.gated] == ["rezero"]

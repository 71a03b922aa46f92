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

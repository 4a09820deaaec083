"""The forward cost table: entries for every size, step units, and the round cost the budget chooser reads."""

from __future__ import annotations

import pytest

from jakiro.model.cost import CostTable, ForwardCost, measure_forward_costs, sample_tree
from jakiro.model.fast_linear import mkl_packing_available
from jakiro.model.fast_verify import shared_packed_linears


def test_sample_tree_is_a_valid_tree_of_the_size():
    for size in (1, 2, 7, 33):
        tree = sample_tree(size, vocab=50, seed=size)
        assert len(tree) == size and tree.max_depth >= (1 if size > 1 else 0)


def test_measure_forward_costs_on_a_tiny_model(tiny_base):
    base = tiny_base("llama")
    seen = []
    table = measure_forward_costs(base, [4, 1, 2], prefix=6, repeats=2, progress=seen.append)
    assert seen == [1, 2, 4] and [e.rows for e in table.entries] == [1, 2, 4]
    one = table.entry(1)
    assert one.verify_steps == pytest.approx(1.0) and one.fast_ms is None
    for entry in table.entries[1:]:
        assert entry.verify_ms > 0 and entry.head_row_ms > 0
        assert (entry.fast_ms is not None) == mkl_packing_available()
    packed = shared_packed_linears(base)
    if packed.backend == "mkl":
        assert packed.rows == (), "MKL's per-row-count copies are released after measuring"
    with pytest.raises(ValueError, match="positive"):
        measure_forward_costs(base, [0, 2])


def test_round_cost_adds_lazy_output_rows_per_visited_node():
    table = CostTable(prefix=10, repeats=1, entries=[
        ForwardCost(rows=8, step_ms=100.0, verify_ms=150.0, verify_steps=1.5, head_row_ms=10.0,
                    fast_ms=120.0, fast_steps=1.2, fast_eager=True),
        ForwardCost(rows=32, step_ms=100.0, verify_ms=200.0, verify_steps=2.0, head_row_ms=10.0,
                    fast_ms=170.0, fast_steps=1.7, fast_eager=False)])
    assert table.round_cost(8, tau=3.0) == pytest.approx(1.2)  # every row's logits came with the forward
    assert table.round_cost(8, tau=3.0, fast=False) == pytest.approx(1.5 + 0.2)
    assert table.round_cost(32, tau=3.0) == pytest.approx(1.7 + 0.2)
    assert table.round_cost(16, tau=3.0) is None

"""Every Kangaroo command answers --help."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["kangaroo.train.main", "kangaroo.evaluation.gen_ea_answer",
                                    "kangaroo.evaluation.gen_baseline_answer", "kangaroo.evaluation.sweep",
                                    "kangaroo.evaluation.replay"])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    assert exit_info.value.code == 0 and "usage: python -m " + module in capsys.readouterr().out

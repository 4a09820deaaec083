"""The tree budget chooser's on-disk cache: a second start with the same model, head and machine measures
nothing; anything that changes the measurements (threads, head weights, base model) measures again; an
unreadable cache file is ignored and rewritten; ``JAKIRO_BUDGET_CACHE=0`` switches it off.

Every test's cache lives in a temp folder (the autouse fixture in tests/conftest.py sets the variable)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from jakiro.model import budget as budget_module
from jakiro.model import budget_cache
from jakiro.model.budget import choose_budget, choose_total_token
from jakiro.model.cost import CostTable, ForwardCost
from jakiro.model.ea_model import EaModel
from tests.helpers.tiny_models import save_tiny_base, save_tiny_head
from tests.utils import build_base

CANDIDATES = (4, 8, 16, 32)
STEPS = {4: 1.10, 8: 1.20, 16: 1.50, 32: 2.20}  # plain steps per verification (other sizes: 1 + N / 30)


def fake_table(model, candidates, fast, repeats=3) -> CostTable:
    costs = {n: STEPS.get(n, 1 + n / 30) for n in candidates}
    return CostTable(prefix=300, repeats=repeats, entries=[
        ForwardCost(n, 100.0, c * 100.0, c, 5.0, c * 100.0, c, True) for n, c in costs.items()])


class Counter:
    """Stands in for the measuring functions and counts their calls."""

    def __init__(self):
        self.costs = self.calibrations = 0

    def forward_costs(self, model, candidates, fast, repeats=3):
        self.costs += 1
        return fake_table(model, candidates, fast, repeats)

    def calibrate(self, ea, budgets, *args, **kwargs):
        self.calibrations += 1
        return {"tau": {n: 1 + 0.1 * i for i, n in enumerate(sorted(budgets))}, "draft_s": 0.02,
                "bookkeeping_s": 0.001, "rounds": 7}


@pytest.fixture
def counter(monkeypatch):
    counting = Counter()
    monkeypatch.setattr(budget_module, "forward_costs", counting.forward_costs)
    monkeypatch.setattr(budget_module, "calibrate", counting.calibrate)
    return counting


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget-cache-models")
    base = save_tiny_base(root / "base")
    return base, save_tiny_head(base, root / "head")


@pytest.fixture
def ea(folders, tmp_path):
    """An EaModel loaded from folders (a copy of the head, so a test may change its files)."""
    import shutil

    base, head = folders
    head_copy = Path(shutil.copytree(head, tmp_path / "head"))
    return EaModel.from_pretrained(str(base), str(head_copy), total_token=8, depth=1, top_k=2)  # one calibration


def cache_files(kind: str = "") -> list[Path]:
    folder = budget_cache.cache_dir()
    return sorted(folder.glob(f"{kind}*.json")) if folder is not None and folder.is_dir() else []


def test_second_start_reads_both_measurements_from_the_cache(ea, counter, capsys):
    first = choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (1, 1)
    assert len(cache_files("costs")) == 1 and len(cache_files("calibration")) == 1
    assert "kept in" in capsys.readouterr().err, "the first start says what it measures and where it is kept"
    second = choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (1, 1), "nothing measured on the second start"
    assert second.as_dict() == first.as_dict()
    assert second.tau_source.startswith("calibration (7 greedy rounds")
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "predicted at" not in line]
    assert len(err) == 1 and err[0].startswith("jakiro: tree budget from the cache (measured ")
    assert f"total_token={second.total_token}" in err[0]


def test_a_changed_thread_count_measures_again(ea, counter):
    choose_budget(ea, CANDIDATES)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        choose_budget(ea, CANDIDATES)
    finally:
        torch.set_num_threads(threads)
    assert (counter.costs, counter.calibrations) == (2, 2)
    assert len(cache_files("costs")) == 2, "each thread count keeps its own entry"
    choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (2, 2), "the first thread count's entry is still there"


def test_changed_head_weights_recalibrate_but_keep_the_cost_table(ea, counter, capsys):
    choose_budget(ea, CANDIDATES)
    weights = next(Path(ea.ea_layer.source_folder).glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # a re-saved head
    capsys.readouterr()
    choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (1, 2), "the base's costs do not depend on the head"
    assert "forward costs from the cache" in capsys.readouterr().err


def test_another_base_model_has_another_cost_key():
    one, other = build_base("llama"), build_base("llama", hidden=48)
    key = budget_cache.cost_key(one, CANDIDATES, False, 3, 300)
    assert key == budget_cache.cost_key(one, CANDIDATES, False, 3, 300)
    assert key != budget_cache.cost_key(other, CANDIDATES, False, 3, 300)
    assert key != budget_cache.cost_key(one, CANDIDATES, True, 3, 300), "fast verification on/off"
    assert key != budget_cache.cost_key(one, (4, 8), False, 3, 300), "candidate budgets"


@pytest.mark.parametrize("garbage", ["{not json", json.dumps({"format": 1, "key": "x"}), "[]"])
def test_an_unreadable_cache_file_is_ignored_and_rewritten(ea, counter, capsys, garbage):
    choose_budget(ea, CANDIDATES)
    (path,) = cache_files("costs")
    path.write_text(garbage)
    capsys.readouterr()
    choose_budget(ea, CANDIDATES)
    err = capsys.readouterr().err
    assert "ignoring the unreadable tree budget cache" in err and str(path) in err
    assert (counter.costs, counter.calibrations) == (2, 1)
    assert json.loads(path.read_text())["value"]["entries"], "the entry was measured and written again"


def test_a_cost_table_with_wrong_fields_is_ignored(ea, counter, capsys):
    choose_budget(ea, CANDIDATES)
    (path,) = cache_files("costs")
    data = json.loads(path.read_text())
    data["value"]["entries"][0]["no_such_field"] = 1
    path.write_text(json.dumps(data))
    choose_budget(ea, CANDIDATES)
    assert counter.costs == 2 and "ignoring the unreadable" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_the_switch_turns_the_cache_off(ea, counter, monkeypatch, value):
    folder = budget_cache.cache_dir()
    monkeypatch.setenv(budget_cache.ENV, value)
    assert budget_cache.cache_dir() is None
    choose_budget(ea, CANDIDATES)
    choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (2, 2)
    assert not folder.exists() or not any(folder.iterdir()), "nothing written"


def test_the_default_folder_is_under_jakiro_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JAKIRO_HOME", str(tmp_path))
    monkeypatch.delenv(budget_cache.ENV)
    assert budget_cache.cache_dir() == tmp_path / "budget-cache"
    monkeypatch.setenv(budget_cache.ENV, "1")
    assert budget_cache.cache_dir() == tmp_path / "budget-cache"


def test_an_unwritable_cache_is_a_note_not_an_error(ea, counter, monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(budget_cache.ENV, str(blocker / "cache"))  # a folder inside a file cannot be made
    choice = choose_budget(ea, CANDIDATES)
    assert choice.total_token in CANDIDATES and "could not write the tree budget cache" in capsys.readouterr().err


def test_a_head_without_a_folder_caches_only_the_cost_table(counter):
    ea = EaModel.from_base_model(build_base("llama"), seed=0, total_token=8, depth=2, top_k=2)
    for _ in range(2):
        choose_budget(ea, CANDIDATES)
    assert (counter.costs, counter.calibrations) == (1, 4), "depths 1 and 2, calibrated at each start"
    assert cache_files("costs") and not cache_files("calibration")


def test_choose_total_token_uses_the_cost_cache(counter):
    base = build_base("llama")
    assert choose_total_token(base, CANDIDATES) == choose_total_token(base, CANDIDATES)
    assert counter.costs == 1


def test_a_second_auto_start_reads_the_real_calibration_back(folders, monkeypatch):
    """The real calibration (not a stand-in) through ``total_token=-1``: stored, read back equal, not rerun."""
    monkeypatch.setattr(budget_module, "forward_costs", fake_table)
    runs = []
    real = budget_module.calibrate
    monkeypatch.setattr(budget_module, "calibrate", lambda *a, **k: runs.append(1) or real(*a, **k))
    base, head = folders
    first = EaModel.from_pretrained(str(base), str(head), total_token=-1, depth=2, top_k=2)
    second = EaModel.from_pretrained(str(base), str(head), total_token=-1, depth=2, top_k=2)
    assert len(runs) == 2, "one calibration per candidate depth (1 and 2), none at the second start"
    assert second.depth == first.depth == first.budget_choice.depth
    assert second.budget_choice.as_dict() == first.budget_choice.as_dict()
    assert second.total_token == first.total_token and second.drafter.total_token == second.total_token

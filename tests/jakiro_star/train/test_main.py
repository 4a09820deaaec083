"""Jakiro* training through the shared pipeline on a tiny model: train -> export -> load -> greedy identity,
both entry points, the shipped head's config, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import jakiro.train.main as core_main
import jakiro.train.recipe as recipe
import jakiro_star.train.main as star_main
from jakiro import EaModel, load_base_model
from jakiro_star.model.drafter import JakiroStarDrafter
from tests.helpers.training import assert_greedy_matches_base, assert_same_weights, interrupted_on_call

TRAIN = ["--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--warmup-steps", "2", "--max-len", "64",
         "--tau-prompts", "0"]
ROOT = Path(__file__).resolve().parents[3]


def records(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "epoch" in r]


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_base_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("star") / "run"
    star_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(out), *TRAIN,
                    "--tau-prompts", "1", "--tau-max-new-tokens", "6", "--tau-tree-sizes", "4,60"])
    return out


def test_train_export_load_and_stay_lossless(trained, tiny_base_dir):
    assert [r["epoch"] for r in records(trained)] == [0, 1]
    assert all(r["holdout_rollouts"] > 0 and r["train_top1"] >= 0 for r in records(trained))
    assert all(r["holdout_chain_read_out"] == "dominant" for r in records(trained))
    tau = [r for r in map(json.loads, (trained / "metrics.jsonl").read_text().splitlines()) if "tau_by_tree_size" in r]
    assert len(tau) == 1 and set(tau[0]["tau_by_tree_size"]) == {"4", "60"}  # measured with the Jakiro* drafter
    assert tau[0]["same_output_for_every_tree_size"]
    config = json.loads((trained / "head" / "config.json").read_text())
    base, tokenizer = load_base_model(str(tiny_base_dir))
    assert config["method"] == "jakiro_star" and config["num_experts"] == 2 and not config["contrastive"]
    assert config["expert_intermediate_size"] == base.config.intermediate_size
    weights = load_file(str(trained / "head" / "model.safetensors"))
    assert weights["layers.0.mlp_moe.gate.weight"].shape == (2, base.config.hidden_size)
    prompt = torch.tensor([tokenizer("write a short poem about the sea")["input_ids"]])
    expected = base.generate(prompt, do_sample=False, max_new_tokens=20)
    for tree in ("static", "dynamic"):
        ea = EaModel.from_pretrained(str(tiny_base_dir), str(trained / "head"), total_token=12, depth=3, top_k=3,
                                     tree=tree)
        assert isinstance(ea.drafter, JakiroStarDrafter) and ea.drafter.tree == tree
        assert torch.equal(ea.eagenerate(prompt, max_new_tokens=20), expected), tree


@pytest.fixture(scope="module")
def rolled_out(tiny_data, tiny_base_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("star_rollout") / "run"
    star_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(out), *TRAIN,
                    "--rollout-steps", "3"])
    return out


def test_a_head_trained_with_rollout_stays_lossless(rolled_out, tiny_base_dir):
    """Per-expert rollout (K = 3) changes the weights, never the output: greedy equals the base model's."""
    assert all(r["rollout_steps_train"] == 3 and r["holdout_rollouts"] > 0 for r in records(rolled_out))
    assert_greedy_matches_base(EaModel.from_pretrained(str(tiny_base_dir), str(rolled_out / "head"), total_token=12,
                                                       depth=3, top_k=3, tree="dynamic"),
                               tiny_base_dir, ["write a short poem about the sea"])


def test_resume_with_rollout_is_bit_identical(rolled_out, tiny_data, tiny_base_dir, tmp_path):
    interrupted = tmp_path / "interrupted"
    args = ["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(interrupted), *TRAIN,
            "--rollout-steps", "3"]
    with interrupted_on_call(recipe, "evaluate", 2), pytest.raises(KeyboardInterrupt):
        star_main.main(args)
    assert not (interrupted / "head").exists()
    star_main.main([*args, "--resume"])
    assert_same_weights(rolled_out / "head", interrupted / "head")


def test_core_entry_point_with_method_flag_trains_the_same_head(trained, tiny_data, tiny_base_dir, tmp_path):
    out = tmp_path / "core"
    core_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(out), *TRAIN,
                    "--method", "jakiro_star"])
    a = load_file(str(trained / "head" / "model.safetensors"))
    b = load_file(str(out / "head" / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_export_in_bf16_loads_as_jakiro_star(trained, tiny_base_dir, tmp_path):
    from jakiro.train.export import main as export

    export(["--head", str(trained / "head"), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"])
    ea = EaModel.from_pretrained(str(tiny_base_dir), str(tmp_path / "bf16"), total_token=8)
    assert ea.method == "jakiro_star" and isinstance(ea.drafter, JakiroStarDrafter)


@pytest.mark.parametrize("extra,fragment", [(["--config", "jakiro.json"], "no contrastive branch"),
                                            (["--num-experts", "1"], "num_experts=1")])
def test_refusals_are_one_line_errors(tiny_data, tiny_base_dir, tmp_path, capsys, extra, fragment):
    """A Jakiro config (contrastive branch) and a single expert are refused."""
    (tmp_path / "jakiro.json").write_text(json.dumps({"draft": {"num_experts": 2, "contrastive": True}}))
    extra = [str(tmp_path / x) if x.endswith(".json") else x for x in extra]
    with pytest.raises(SystemExit) as info:
        star_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out",
                        str(tmp_path / "x"), *TRAIN, *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and fragment in err


def test_shipped_head_config_has_the_jakiro_budget():
    """The Jakiro* head is trained on the same data with the same budget as the shipped Jakiro head."""
    star = json.loads((ROOT / "jakiro_star/train/configs/smollm2-135m.json").read_text())
    jakiro = json.loads((ROOT / "jakiro/train/configs/smollm2-135m.json").read_text())
    assert star["train"] == jakiro["train"]
    assert star["draft"]["method"] == "jakiro_star" and star["draft"]["contrastive"] is False
    assert star["draft"]["draft_vocab_size"] == jakiro["draft"]["draft_vocab_size"]
    script = (ROOT / "scripts/train_default_heads.sh").read_text()
    line = next(line for line in script.splitlines() if "jakiro_star.train.main" in line)
    assert "jakiro_star/train/configs/smollm2-135m.json" in script and '"$DATA"' in line

"""Widening a head's experts keeps every output it drafts, lets the new units learn, and round-trips to disk."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.methods import load_head
from jakiro.train.losses import draft_loss
from jakiro.train.config import TrainConfig
from jakiro.train.widen import main, widen_head
from tests.jakiro_star.train.test_losses import make_star_head
from tests.train.test_losses import make_head, rollout_batch


@pytest.mark.parametrize("contrastive", [True, False])
def test_widened_head_drafts_exactly_what_the_trained_one_does(contrastive):
    head = make_head(contrastive)
    wide = widen_head(head, 40)
    assert wide.config.expert_intermediate_size == 40 and head.config.expert_intermediate_size == 16
    assert wide.layers[0].mlp_moe.experts[0].gate_proj.weight.shape == (40, 16)
    torch.manual_seed(3)
    features, ids = torch.randn(2, 6, 16), torch.randint(24, (2, 6))
    branches = "both" if contrastive else "mix"
    expected, got = head(features, ids, branches=branches), wide(features, ids, branches=branches)
    for a, b in zip(expected if contrastive else [expected], got if contrastive else [got]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wide.head_weight, head.head_weight)


def test_new_units_get_gradient():
    wide = widen_head(make_head(True), 40)
    loss, _ = draft_loss(wide, rollout_batch(), TrainConfig(noise=0.0))
    loss.backward()
    down = wide.layers[0].mlp_moe.experts[1].down_proj.weight
    assert down[:, 16:].abs().sum() == 0 and down.grad[:, 16:].abs().sum() > 0


def test_command_writes_a_loadable_head_and_refuses_what_it_cannot_widen(tmp_path, capsys):
    head = make_head(True)
    head.save_pretrained(tmp_path / "head")
    main(["--head", str(tmp_path / "head"), "--intermediate-size", "32", "--out", str(tmp_path / "wide")])
    assert "experts 16 -> 32 hidden units" in capsys.readouterr().out
    wide = load_head(tmp_path / "wide")
    assert wide.config.expert_intermediate_size == 32
    reloaded = load_head(tmp_path / "head")
    for name, value in reloaded.state_dict().items():
        if "experts" not in name:
            torch.testing.assert_close(wide.state_dict()[name], value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--head", str(tmp_path / "head"), "--intermediate-size", "8", "--out", str(tmp_path / "narrow")])
    assert exit_info.value.code == 2 and "narrower than the head's experts (16)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no SwiGLU experts"):
        widen_head(make_star_head(), 64)


def test_widened_head_scores_like_the_trained_one_and_fine_tunes(tiny_data, tiny_base_dir, tmp_path):
    import json

    from jakiro.train import main as train_main
    from tests.train.test_main import train

    run = tmp_path / "run"
    train(tiny_data, tiny_base_dir, run)
    width = 2 * load_head(run / "head").config.expert_intermediate_size
    main(["--head", str(run / "head"), "--intermediate-size", str(width), "--out", str(tmp_path / "wide")])
    config = tmp_path / "wide.json"
    config.write_text(json.dumps({"draft": {"expert_intermediate_size": width}, "train": {}}))
    common = ["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--max-len", "64"]
    train_main.main([*common, "--out", str(tmp_path / "narrow_eval"), "--eval-only", "--init-head", str(run / "head")])
    train_main.main([*common, "--out", str(tmp_path / "wide_eval"), "--eval-only", "--init-head",
                     str(tmp_path / "wide"), "--config", str(config)])
    narrow, wide = (json.loads((tmp_path / name / "holdout_eval.json").read_text()) for name in ("narrow_eval", "wide_eval"))
    assert wide["holdout_top1"] == pytest.approx(narrow["holdout_top1"])
    assert wide["holdout_acc_per_step"] == pytest.approx(narrow["holdout_acc_per_step"])
    assert wide["holdout_loss"] == pytest.approx(narrow["holdout_loss"], rel=1e-5)
    train_main.main([*common, "--out", str(tmp_path / "tuned"), "--epochs", "1", "--batch-size", "2", "--tau-prompts",
                     "0", "--init-head", str(tmp_path / "wide"), "--config", str(config)])
    assert load_head(tmp_path / "tuned" / "head").config.expert_intermediate_size == width


def test_a_bf16_head_stays_bf16(tmp_path):
    from safetensors.torch import load_file

    make_head(True).save_pretrained(tmp_path / "head", dtype=torch.bfloat16)
    main(["--head", str(tmp_path / "head"), "--intermediate-size", "32", "--out", str(tmp_path / "wide")])
    stored = load_file(str(tmp_path / "wide" / "model.safetensors"))
    assert {value.dtype for value in stored.values() if value.is_floating_point()} == {torch.bfloat16}

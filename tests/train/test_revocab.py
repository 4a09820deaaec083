"""A trained head's draft vocabulary can be re-chosen: its own tokens stay, its weights and exactness too."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import jakiro.train.main as train_main
from jakiro import EaModel
from jakiro.errors import ConfigError
from jakiro.methods import load_head
from jakiro.model.cnets import JakiroDraftModel, init_weights
from jakiro.model.configs import DraftConfig
from jakiro.train.dataset import draft_vocabulary, token_frequencies
from jakiro.train.revocab import coverage, main, set_draft_vocabulary
from tests.helpers.training import assert_greedy_matches_base
from tests.train.test_main import train


def test_the_heads_own_tokens_stay_and_the_most_frequent_others_fill_up():
    counts = torch.tensor([5, 0, 9, 1, 7, 3])
    keep = torch.tensor([1, 3])
    assert draft_vocabulary(counts, 4, keep).tolist() == [1, 2, 3, 4]
    assert draft_vocabulary(counts, 2, keep).tolist() == [1, 3]
    assert draft_vocabulary(counts, 1, keep).tolist() == [2]  # too small to keep them: the most frequent only
    assert draft_vocabulary(counts, 3).tolist() == [0, 2, 4]
    assert draft_vocabulary(torch.tensor([2, 2, 2]), 2).tolist() == [0, 1]  # ties go to the lower id
    for size in (0, 7):
        with pytest.raises(ConfigError, match="1..6 tokens"):
            draft_vocabulary(counts, size)
    assert coverage(counts, torch.tensor([2, 4])) == pytest.approx(16 / 25) and coverage(counts, None) == 1.0


def test_a_wider_vocabulary_keeps_every_old_logit_and_only_adds_candidates():
    config = DraftConfig(hidden_size=16, vocab_size=24, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         num_experts=2, contrastive=True, draft_vocab_size=6)
    torch.manual_seed(0)
    head = JakiroDraftModel(config)
    init_weights(head)
    head.embed_weight, head.full_head_weight = torch.randn(24, 16), torch.randn(24, 16)
    head.d2t.copy_(torch.tensor([1, 4, 5, 9, 13, 20]))
    head.refresh_head()
    mix = head(torch.randn(2, 5, 16), torch.randint(24, (2, 5)), branches="mix")
    before = head.logits(mix)
    old_targets = head.d2t.clone()
    set_draft_vocabulary(head, draft_vocabulary(torch.arange(24), 10, keep=old_targets))
    assert head.config.draft_vocab_size == 10 and head.draft_vocab_size == 10 and head.head_weight.shape == (10, 16)
    assert set(old_targets.tolist()) <= set(head.d2t.tolist())
    columns = torch.searchsorted(head.d2t, old_targets)  # where the old tokens sit in the new (id-ordered) vocabulary
    torch.testing.assert_close(head.logits(mix)[..., columns], before)
    assert torch.equal(head.to_target_ids(columns), old_targets)

def test_command_revocabs_a_trained_head_that_stays_lossless_and_fine_tunes(tiny_data, tiny_base_dir, tmp_path,
                                                                            capsys):
    run = tmp_path / "run"
    train(tiny_data, tiny_base_dir, run, "--draft-vocab-size", "20")
    capsys.readouterr()
    main(["--head", str(run / "head"), "--data", str(tiny_data), "--draft-vocab-size", "40", "--out",
          str(tmp_path / "wide")])
    out = capsys.readouterr().out
    assert "draft vocabulary 20 -> 40 tokens" in out and "of the data's assistant tokens" in out
    old, wide = load_file(str(run / "head" / "model.safetensors")), load_file(str(tmp_path / "wide" / "model.safetensors"))
    assert set(old["d2t"].tolist()) <= set(wide["d2t"].tolist()) and len(wide["d2t"]) == 40
    for name, value in old.items():  # the weights are the trained head's
        if name != "d2t":
            assert torch.equal(wide[name], value), name
    assert json.loads((tmp_path / "wide" / "config.json").read_text())["draft_vocab_size"] == 40
    assert load_head(tmp_path / "wide").draft_vocab_size == 40
    load_head(run / "head").save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)  # a bf16 export stays bf16
    main(["--head", str(tmp_path / "bf16"), "--data", str(tiny_data), "--draft-vocab-size", "40", "--out",
          str(tmp_path / "bf16_wide")])
    half, half_wide = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("bf16", "bf16_wide"))
    assert all(torch.equal(half_wide[name], value) for name, value in half.items() if name != "d2t")
    ea = EaModel.from_pretrained(str(tiny_base_dir), str(tmp_path / "wide"), total_token=12, depth=3, top_k=3)
    assert_greedy_matches_base(ea, tiny_base_dir, ["write a short poem about the sea"])

    # fine-tuning the 20-token head with --draft-vocab-size 40 widens it by the same rule (lr 1e-30: no update)
    tuned = tmp_path / "tuned"
    train_main.main(["--data", str(tiny_data), "--base-model-path", str(tiny_base_dir), "--out", str(tuned),
                     "--batch-size", "2", "--lr", "1e-30", "--warmup-steps", "1", "--max-len", "64",
                     "--tau-prompts", "0", "--epochs", "1", "--init-head", str(run / "head"),
                     "--draft-vocab-size", "40"])
    assert "draft vocabulary 20 -> 40 tokens" in capsys.readouterr().err
    tuned_weights = load_file(str(tuned / "head" / "model.safetensors"))
    assert torch.equal(tuned_weights["d2t"], wide["d2t"])
    counts = token_frequencies(tiny_data, load_head(run / "head").config.vocab_size)
    expected = draft_vocabulary(counts, 40, keep=old["d2t"])
    assert torch.equal(tuned_weights["d2t"], expected.to(tuned_weights["d2t"].dtype))

    with pytest.raises(SystemExit) as exit_info:
        main(["--head", str(run / "head"), "--data", str(tiny_data), "--draft-vocab-size", "0", "--out",
              str(tmp_path / "none")])
    assert exit_info.value.code == 2 and "1.." in capsys.readouterr().err

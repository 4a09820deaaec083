"""scripts/train_default_heads.sh turns its FINETUNE stages into the right training commands.

The script is run with a stand-in Python that only records its arguments, so the test checks the command lines
the shipped heads' recipe produces without training anything.
"""
import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_script(tmp_path: Path, finetune: str, **extra_env: str) -> list[list[str]]:
    log = tmp_path / "calls.log"
    fake_python = tmp_path / "python"
    fake_python.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{log}"\n')
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PYTHON=str(fake_python), FINETUNE=finetune, **extra_env)
    subprocess.run(["bash", str(ROOT / "scripts/train_default_heads.sh"), str(tmp_path / "work"), "96", "1"],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    return [line.split() for line in log.read_text().splitlines()]


def _option(call: list[str], name: str) -> str | None:
    return call[call.index(name) + 1] if name in call else None


def test_finetune_stages_pass_data_rollout_weights_and_holdout(tmp_path):
    calls = _run_script(tmp_path, "192:1:4e-4:2:3 384:1:3e-4:2:3:0.2:192")
    work = str(tmp_path / "work")
    generation = next(call for call in calls if "jakiro.ge_data.allocation" in call)
    assert _option(generation, "--max-samples") == "384"  # one generation run covers the largest stage
    core = [call for call in calls if "jakiro.train.main" in call]
    assert [_option(call, "--out") for call in core] == [
        f"{work}/jakiro", f"{work}/eagle2", f"{work}/jakiro_ft1", f"{work}/eagle2_ft1",
        f"{work}/jakiro_ft2", f"{work}/eagle2_ft2"]
    jakiro_ft1, eagle2_ft1, jakiro_ft2, eagle2_ft2 = core[2:]
    for call in (jakiro_ft1, eagle2_ft1):
        assert _option(call, "--data") == f"{work}/data_192" and _option(call, "--holdout-from") is None
        assert _option(call, "--rollout-steps") == "2" and _option(call, "--answer-start-weight") == "3"
    for call in (jakiro_ft2, eagle2_ft2):
        assert _option(call, "--data") == f"{work}/data_384"
        assert _option(call, "--holdout-from") == f"{work}/data_192"
    assert _option(jakiro_ft2, "--contrastive-weight") == "0.2" and _option(eagle2_ft2, "--contrastive-weight") is None
    assert _option(jakiro_ft2, "--init-head") == f"{work}/jakiro_ft1/head"
    assert _option(eagle2_ft2, "--init-head") == f"{work}/eagle2_ft1/head" and "--no-contrastive" in eagle2_ft2


def test_a_stage_can_train_on_a_shard_range(tmp_path):
    calls = _run_script(tmp_path, "192:1:4e-4 s3-5:1:3e-4:2:3:0.2")
    work = str(tmp_path / "work")
    generation = next(call for call in calls if "jakiro.ge_data.allocation" in call)
    assert _option(generation, "--max-samples") == str(6 * 96)  # shards 0..5
    view = next(call for call in calls if "jakiro.ge_data.subset" in call and "--shard-ranges" in call)
    assert _option(view, "--shard-ranges") == "3-5" and _option(view, "--out") == f"{work}/data_s3-5"
    jakiro_ft2, eagle2_ft2 = [call for call in calls if "jakiro.train.main" in call][4:]
    assert _option(jakiro_ft2, "--data") == _option(eagle2_ft2, "--data") == f"{work}/data_s3-5"
    assert _option(jakiro_ft2, "--init-head") == f"{work}/jakiro_ft1/head"


def test_a_shard_range_stage_can_keep_an_earlier_range_held_out(tmp_path):
    calls = _run_script(tmp_path, "192:1:4e-4 s3-5:1:3e-4:2:3:0.2 s6-8:1:3e-4:2:3:0.2:s3-5")
    work = str(tmp_path / "work")
    generation = next(call for call in calls if "jakiro.ge_data.allocation" in call)
    assert _option(generation, "--max-samples") == str(9 * 96)  # shards 0..8
    jakiro_ft3, eagle2_ft3 = [call for call in calls if "jakiro.train.main" in call][6:]
    for call in (jakiro_ft3, eagle2_ft3):
        assert _option(call, "--data") == f"{work}/data_s6-8"
        assert _option(call, "--holdout-from") == f"{work}/data_s3-5"
    assert _option(jakiro_ft3, "--init-head") == f"{work}/jakiro_ft2/head"


def test_a_jakiro_star_stage_and_a_final_wider_vocabulary(tmp_path):
    calls = _run_script(tmp_path, "192:1:4e-4 s3-5:1:3e-4:2:3:0.2", STAR_FINETUNE="s3-5:1:5e-4:3:192:1000:64",
                        REVOCAB="64:3-4,5")
    work = str(tmp_path / "work")
    star = [call for call in calls if "jakiro_star.train.main" in call]
    assert [_option(call, "--out") for call in star] == [f"{work}/jakiro_star", f"{work}/jakiro_star_ft1"]
    tuned = star[1]
    assert _option(tuned, "--init-head") == f"{work}/jakiro_star/head" and _option(tuned, "--data") == f"{work}/data_s3-5"
    assert _option(tuned, "--holdout-from") == f"{work}/data_192" and _option(tuned, "--max-steps") == "1000"
    assert _option(tuned, "--draft-vocab-size") == "64" and _option(tuned, "--answer-start-weight") == "3"
    assert "--rollout-steps" not in tuned
    view = next(call for call in calls if "jakiro.ge_data.subset" in call and _option(call, "--shard-ranges") == "3-4,5")
    revocab = [call for call in calls if "jakiro.train.revocab" in call]
    assert [_option(call, "--out") for call in revocab] == [f"{work}/jakiro_v64/head", f"{work}/eagle2_v64/head"]
    assert all(_option(call, "--data") == _option(view, "--out") and _option(call, "--draft-vocab-size") == "64"
               for call in revocab)


def test_a_jakiro_star_stage_with_rollout(tmp_path):
    calls = _run_script(tmp_path, "192:1:4e-4", STAR_FINETUNE="s3-5:1:5e-4:3:192::64:2")
    tuned = [call for call in calls if "jakiro_star.train.main" in call][1]
    assert _option(tuned, "--rollout-steps") == "2" and _option(tuned, "--draft-vocab-size") == "64"
    assert "--max-steps" not in tuned



def test_widening_after_a_stage_feeds_the_later_stages(tmp_path):
    """REVOCAB="SIZE:RANGES:STAGE": the heads of stage STAGE are widened, the next stage starts from the widened heads
    and every later stage trains over SIZE tokens; nothing is widened after the last stage."""
    calls = _run_script(tmp_path, "192:1:4e-4 s3-5:1:3e-4:2:3:0.2 s3-6:1:2e-4:2:3:0.2", REVOCAB="64:3-4:1")
    work = str(tmp_path / "work")
    core = [call for call in calls if "jakiro.train.main" in call]
    by_out = {_option(call, "--out").rsplit("/", 1)[1]: call for call in core}
    revocab = [call for call in calls if "jakiro.train.revocab" in call]
    assert [(_option(call, "--head"), _option(call, "--out")) for call in revocab] == [
        (f"{work}/jakiro_ft1/head", f"{work}/jakiro_v64/head"), (f"{work}/eagle2_ft1/head", f"{work}/eagle2_v64/head")]
    order = [" ".join(call) for call in calls]
    assert order.index(" ".join(revocab[0])) > order.index(" ".join(by_out["eagle2_ft1"]))
    assert order.index(" ".join(revocab[1])) < order.index(" ".join(by_out["jakiro_ft2"]))
    for name in ("jakiro", "eagle2"):
        assert _option(by_out[f"{name}_ft1"], "--draft-vocab-size") is None
        assert _option(by_out[f"{name}_ft2"], "--init-head") == f"{work}/{name}_v64/head"
        assert _option(by_out[f"{name}_ft3"], "--init-head") == f"{work}/{name}_ft2/head"
        assert _option(by_out[f"{name}_ft2"], "--draft-vocab-size") == "64"
        assert _option(by_out[f"{name}_ft3"], "--draft-vocab-size") == "64"

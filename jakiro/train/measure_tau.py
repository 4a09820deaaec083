"""τ by tree size on held-out prompts with the real engine: `python -m jakiro.train.measure_tau --help`.

The prompts are the first user turns of the conversations training held out (the last
``holdout_fraction`` of a data folder, the split `jakiro.train.main` uses), cut right before the first
answer token, so the head never trained on them. For each tree size (nodes, root included) the head
drafts for the base model through `EaModel` at temperature 0; τ = tokens per verification round, the
bonus token included (Σ tokens of every round / rounds over all prompts, as `docs/evaluation.md` defines
it). Greedy answers must not depend on the tree, so the record also says whether they were identical.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..base_models import DEFAULT_BASE_MODEL, load_base_model
from ..commands import exit_on_error
from ..errors import ConfigError
from ..ge_data.storage import load_sample

DEFAULT_TREE_SIZES = (4, 8, 16, 32, 60)
POSITION_EDGES = (0, 32, 128)  # answer-index buckets of τ (MT-bench runs here stop at 32 new tokens)


def parse_tree_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"tree sizes must be comma-separated integers like 4,8,16, got {text!r}") from None
    if not sizes or any(size < 2 for size in sizes):
        raise ConfigError(f"tree sizes must be integers >= 2 (nodes, root included), got {text!r}")
    return sizes


def held_out_prompts(data: str | Path, holdout_fraction: float, count: int) -> list[torch.Tensor]:
    """Up to ``count`` prompts [1, P]: held-out conversations up to their first loss-bearing token."""
    from .dataset import split_entries

    _, holdout, _ = split_entries(data, holdout_fraction)
    prompts = []
    for path, start, end in holdout:
        sample = load_sample(path, start, end, ("input_ids", "loss_mask"))
        answer = sample["loss_mask"].nonzero()
        if len(answer) and int(answer[0]) > 0:
            prompts.append(sample["input_ids"][: int(answer[0])].long()[None])
        if len(prompts) == count:
            break
    if not prompts:
        raise ConfigError(f"{data} holds no held-out conversation with an answer: generate more data")
    return prompts


@torch.no_grad()
def tau_by_tree_size(base, tokenizer, head: str | Path, prompts: list[torch.Tensor], tree_sizes=DEFAULT_TREE_SIZES,
                     depth: int = 5, top_k: int = 8, max_new_tokens: int = 32, cepd: bool | None = None) -> dict:
    """Greedy generation of every prompt for every tree size; τ and rounds per size.

    ``cepd=False`` drafts a Jakiro head without its contrastive last level (None: the head's default), to
    measure what that level adds."""
    from ..model.ea_model import EaModel

    device = base.get_output_embeddings().weight.device
    result, outputs = {}, []
    options = {} if cepd is None else {"cepd": cepd}
    for size in tree_sizes:
        ea = EaModel.from_base_and_head(base, tokenizer, head, total_token=size, depth=depth, top_k=top_k, **options)
        lengths, new_tokens, answers, by_position = [], 0, [], {}
        for prompt in prompts:
            output = ea.eagenerate(prompt.to(device), temperature=0.0, max_new_tokens=max_new_tokens)
            answers.append(output[0, prompt.shape[1]:].tolist())
            rounds = ea.last_stats.accept_lengths
            lengths += rounds
            new_tokens += ea.last_stats.new_tokens
            for label, tokens in rounds_by_answer_position(rounds).items():
                by_position.setdefault(label, []).extend(tokens)
        outputs.append(answers)
        result[str(size)] = {"tau": sum(lengths) / max(len(lengths), 1), "rounds": len(lengths),
                             "tokens_in_rounds": sum(lengths), "new_tokens": new_tokens,
                             "tau_by_answer_position": {label: {"tau": sum(r) / len(r), "rounds": len(r)}
                                                        for label, r in by_position.items()}}
    return {"tau_by_tree_size": {size: value["tau"] for size, value in result.items()}, "tau_details": result,
            "tau_settings": {"depth": depth, "top_k": top_k, "temperature": 0.0, "prompts": len(prompts),
                             "max_new_tokens": max_new_tokens, "prompt_source": "held-out conversations",
                             "base_dtype": str(base.dtype).removeprefix("torch."),
                             **({} if cepd is None else {"cepd": cepd})},
            "same_output_for_every_tree_size": all(answers == outputs[0] for answers in outputs),
            "repeated_4gram_fraction": repeated_ngram_fraction(outputs[0]) if outputs else None}


def rounds_by_answer_position(accept_lengths: list[int], edges: tuple[int, ...] = POSITION_EDGES) -> dict:
    """Each round's accepted length, grouped by the answer index of the round's first token (the prefill
    emits token 0, so round r starts at 1 + the tokens of the rounds before it)."""
    groups: dict[str, list[int]] = {}
    start = 1
    for length in accept_lengths:
        groups.setdefault(bucket_label(start, edges), []).append(length)
        start += length
    return groups


def bucket_label(index: int, edges: tuple[int, ...]) -> str:
    """The answer-index bucket holding ``index``, named by its range ("0-31", "32-127", "128+")."""
    bucket = max(b for b, edge in enumerate(edges) if index >= edge)
    return f"{edges[bucket]}-{edges[bucket + 1] - 1}" if bucket + 1 < len(edges) else f"{edges[bucket]}+"


def repeated_ngram_fraction(answers: list[list[int]], n: int = 4) -> float:
    """Share of answer tokens that close an n-gram already seen earlier in the same answer: how much of a
    greedy small model's text is a loop (loops are easy to draft and lift τ)."""
    repeated = total = 0
    for tokens in answers:
        seen = set()
        for end in range(n, len(tokens) + 1):
            gram = tuple(tokens[end - n:end])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


def measure_run(head: str | Path, data: str | Path, base_model_path: str, run: str | Path | None,
                holdout_fraction: float, prompts: int, max_new_tokens: int, tree_sizes=DEFAULT_TREE_SIZES,
                depth: int = 5, top_k: int = 8, device=None, cepd: bool | None = None,
                dtype: str = "float32") -> dict:
    """Measure, print one JSON line, and append it to ``run/metrics.jsonl`` when a run folder is given.

    ``dtype`` is the base model's (and so the features' and the greedy answers'): the self-distilled data is made in
    bf16, the engine verifies in fp32 on CPU, and measuring in both tells a precision mismatch from other causes."""
    base, tokenizer = load_base_model(base_model_path, torch_dtype=dtype, device_map=None)
    if device is not None:
        base.to(device)
    record = tau_by_tree_size(base, tokenizer, head, held_out_prompts(data, holdout_fraction, prompts), tree_sizes,
                              depth, top_k, max_new_tokens, cepd)
    record["head"] = str(head)
    if run is not None:
        with open(Path(run) / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.train.measure_tau", description=__doc__.splitlines()[0])
    parser.add_argument("--head", required=True, help="head folder (e.g. RUN/head) or shipped head alias")
    parser.add_argument("--data", required=True, help="the data folder the head was trained on")
    parser.add_argument("--base-model-path", default=DEFAULT_BASE_MODEL, help="HF model folder or alias")
    parser.add_argument("--run", default=None, help="training output folder: append the result to its metrics.jsonl "
                                                    "and take holdout_fraction from its run_config.json")
    parser.add_argument("--holdout-fraction", type=float, default=None, help="default: the run's, else 0.05")
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts to answer")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tree-sizes", default=",".join(map(str, DEFAULT_TREE_SIZES)), help="nodes, root included")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--no-cepd", action="store_true",
                        help="draft a Jakiro head without its contrastive last level (what that level adds to τ)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="the base model's dtype (default float32, what the engine runs on CPU); the "
                             "self-distilled data was captured in bfloat16")
    return parser


def run_command(args: argparse.Namespace) -> dict:
    sizes = parse_tree_sizes(args.tree_sizes)
    if args.prompts < 1 or args.max_new_tokens < 1:
        raise ConfigError("--prompts and --max-new-tokens must be >= 1")
    fraction = args.holdout_fraction
    if fraction is None and args.run is not None:
        saved = Path(args.run) / "run_config.json"
        if not saved.is_file():
            raise ConfigError(f"{args.run} has no run_config.json: pass a training output folder or drop --run")
        fraction = json.loads(saved.read_text())["train"]["holdout_fraction"]
    fraction = 0.05 if fraction is None else fraction
    from ..heads import resolve_head_path

    resolve_head_path(args.head)  # a missing head fails before the base model loads
    return measure_run(args.head, args.data, args.base_model_path, args.run, fraction, args.prompts,
                       args.max_new_tokens, sizes, args.depth, args.top_k, cepd=False if args.no_cepd else None,
                       dtype=args.dtype)


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), run_command, argv)


if __name__ == "__main__":
    main()

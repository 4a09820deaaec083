"""The forward cost table: what verifying a tree of k nodes costs on this device, in plain decoding steps.

Speculative decoding pays off when τ (tokens per round) exceeds the cost of a round in plain steps,
so both the profiling command and the tree budget chooser need the target's cost by tree size. Every
entry is measured against a plain step taken in the same loop (step, tree, fast tree, step, ...), so
slow drift of a shared machine hits all of them alike; medians over the repeats.

For k rows, ``verify_ms`` is one `TargetRunner.verify` as the generation loop runs it plus the logits
of the root (a round that accepts nothing). Each further node the walk visits adds ``head_row_ms``
where logits are computed per visited node (``eager`` False); the fast forward of a small tree has
computed all of them already (``eager`` True).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .fast_verify import fast_verify_supported, shared_packed_linears
from .target import TargetRunner
from .tree import DraftTree

DEFAULT_PREFIX = 300


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def sample_tree(size: int, vocab: int, seed: int = 0) -> DraftTree:
    """A tree of ``size`` nodes shaped like a dynamic draft tree (wide near the root, a few deep chains)."""
    gen = torch.Generator().manual_seed(seed)
    parents = [-1] + [int(torch.randint(max(0, i // 2 - 1), i, (1,), generator=gen)) if i > 1 else 0
                      for i in range(1, size)]
    return DraftTree(tokens=torch.randint(1, vocab, (size,), generator=gen), parents=torch.tensor(parents))


@dataclass
class ForwardCost:
    """One row of the table; ``*_steps`` are the same costs divided by the plain step measured alongside."""

    rows: int
    step_ms: float
    verify_ms: float
    verify_steps: float
    head_row_ms: float
    fast_ms: float | None = None
    fast_steps: float | None = None
    fast_eager: bool | None = None


@dataclass
class CostTable:
    """Forward costs by tree size on one device, with what they were measured under."""

    prefix: int
    repeats: int
    entries: list[ForwardCost] = field(default_factory=list)

    @property
    def step_ms(self) -> float:
        """The plain step (median over the entries' own measurements)."""
        return statistics.median(e.step_ms for e in self.entries)

    def entry(self, rows: int) -> ForwardCost | None:
        return next((e for e in self.entries if e.rows == rows), None)

    def round_cost(self, rows: int, tau: float, fast: bool = True) -> float | None:
        """Plain steps one verification of a ``rows``-node tree costs when a round yields ``tau`` tokens."""
        e = self.entry(rows)
        if e is None:
            return None
        if fast and e.fast_steps is not None:
            extra = 0.0 if e.fast_eager else (tau - 1) * e.head_row_ms / e.step_ms
            return e.fast_steps + extra
        return e.verify_steps + (tau - 1) * e.head_row_ms / e.step_ms

    def as_dict(self) -> dict:
        return {"prefix": self.prefix, "repeats": self.repeats, "entries": [asdict(e) for e in self.entries]}


class _Bench:
    """A plain and (where supported) a fast runner holding the same ``prefix``-token cache."""

    def __init__(self, model: nn.Module, prefix: int, capacity: int, fast: bool):
        self.model, self.prefix = model, prefix
        self.plain = TargetRunner(model)
        self.fast = TargetRunner(model) if fast and fast_verify_supported(model) else None
        gen = torch.Generator().manual_seed(1)
        prompt = torch.randint(1, model.config.vocab_size, (1, prefix), generator=gen)
        for runner in (self.plain, self.fast):
            if runner is not None:
                runner.reset(capacity)
                runner.extend(prompt.to(runner.device))
        self.token = prompt[:, :1].to(self.plain.device)

    def step(self) -> None:
        self.plain.extend(self.token)
        self.plain.cache.crop(self.prefix)

    def verify(self, runner: TargetRunner, tree: DraftTree) -> None:
        logits, _ = runner.verify(tree)
        logits[0].argmax()
        runner.cache.crop(self.prefix)


def _timed(device: torch.device, fn: Callable[[], None]) -> float:
    begin = _now(device)
    fn()
    return (_now(device) - begin) * 1000


@torch.no_grad()
def measure_forward_costs(model: nn.Module, sizes: Iterable[int], prefix: int = DEFAULT_PREFIX, repeats: int = 5,
                          fast: bool = True, plain: bool = True,
                          progress: Callable[[int], None] | None = None) -> CostTable:
    """Measure every size (the plain forward unless ``plain`` is False, and the fast forward where supported
    and ``fast``), interleaved with plain steps; ``progress(size)`` is called after each size. Without the
    plain forward its fields repeat the fast forward's."""
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"tree sizes must be positive integers, got {sizes}")
    device = model.get_output_embeddings().weight.device
    bench = _Bench(model, prefix, prefix + max(sizes) + 1, fast)
    head = bench.plain.lm_head
    hidden = torch.randn(model.config.hidden_size, dtype=bench.plain.dtype, device=device)
    table = CostTable(prefix, repeats)
    for size in sizes:
        tree = sample_tree(size, model.config.vocab_size, seed=size)
        contenders: dict[str, Callable[[], None]] = {"step": bench.step, "row": lambda: head(hidden)}
        with_fast = size > 1 and bench.fast is not None
        if size > 1 and (plain or not with_fast):
            contenders["verify"] = lambda: bench.verify(bench.plain, tree)
        if with_fast:
            bench.fast.use_fast_verify(size)
            contenders["fast"] = lambda: bench.verify(bench.fast, tree)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for repeat in range(repeats + 1):  # the first pass warms up (and packs the weights)
            for name, fn in contenders.items():
                elapsed = _timed(device, fn)
                if repeat:
                    times[name].append(elapsed)
        med = {name: statistics.median(values) for name, values in times.items()}
        verify = med.get("verify", med.get("fast", med["step"]))
        entry = ForwardCost(size, med["step"], verify, verify / med["step"], med["row"])
        if "fast" in med:
            entry.fast_ms, entry.fast_steps = med["fast"], med["fast"] / med["step"]
            entry.fast_eager = bench.fast.fast.eager_logits
            shared_packed_linears(model).release(keep_panels=True)  # one MKL copy at a time; panels serve all
        table.entries.append(entry)
        if progress is not None:
            progress(size)
    return table

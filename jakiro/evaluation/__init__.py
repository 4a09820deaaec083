"""Speed evaluation: answer generation, metrics (tokens/s, speedup, τ, α), side-by-side comparison, figures.

Commands (each has ``--help``): ``gen_ea_answer``, ``gen_baseline_answer``, ``speed``, ``compare``,
``plot``, run as ``python -m jakiro.evaluation.NAME``. Definitions are in docs/evaluation.md.
"""

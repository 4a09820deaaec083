"""The method registry: which head class, drafter and training loss a draft head's ``method`` stands for.

A head folder's ``config.json`` names its method ("jakiro", "eagle2", "jakiro_star", "kangaroo");
loading, drafting and training look the method up here, so one `EaModel`, one generation loop and
one training loop (`jakiro.train.loop`) serve every method and no caller passes the method by hand. Entries name
their parts as lazy ``"module:attr"`` strings: the core never imports a method package
(``jakiro_star``, ``kangaroo``) until a head of that method is actually used.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from torch import nn

    from .model.drafter import Drafter
    from .model.ea_model import EaModel


@dataclass(frozen=True)
class MethodSpec:
    """One method's parts, as ``"module:attr"`` strings imported on first use.

    * ``head_class``: the draft head (``from_pretrained(folder, base_model=...)``, ``save_pretrained``,
      ``.config.method``; constructed from a `DraftConfig`).
    * ``drafter_factory``: ``factory(ea_model) -> Drafter``; reads the tree settings and
      ``ea_model.drafter_options`` (method-specific options such as Jakiro*'s ``tree``).
    * ``head_init``: ``init(head)`` for a freshly built head (training from scratch, tests).
    * ``training_loss``: ``loss(model, batch, train_config, noise_generator, head_weight, contrastive)
      -> (total, parts)`` with ``parts["mix"]`` the branch whose top-1 the training loop reports; the loss
      of the EAGLE-style recipe (`jakiro.train.recipe.DraftHeadRecipe`), None where the recipe has its own.
    * ``training_recipe``: a `jakiro.train.loop.TrainingRecipe` class, made from the run's configuration:
      what training this method's heads does differently (head, data keys, loss, held-out metrics).
    * ``config_class``: the head's configuration (``from_base_config(base_config, **options)``, ``load``);
      `DraftConfig` for the EAGLE-style heads, Kangaroo's own (it has an exit layer).
    * ``model_card``: ``card(head, run, data, mt_bench, device, choice_note) -> str``, the head's README.md
      (`jakiro.train.model_card`); None: the EAGLE-style card written by the core.
    """

    name: str
    head_class: str
    drafter_factory: str
    head_init: str = "jakiro.model.cnets:init_weights"
    training_loss: str | None = "jakiro.train.losses:draft_loss"
    label: str = ""
    config_class: str = "jakiro.model.configs:DraftConfig"
    training_recipe: str = "jakiro.train.recipe:DraftHeadRecipe"
    model_card: str | None = None


METHOD_SPECS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("jakiro", "jakiro.model.cnets:JakiroDraftModel", "jakiro.model.tree_drafter:make_tree_drafter",
               label="Jakiro"),
    MethodSpec("eagle2", "jakiro.model.cnets:JakiroDraftModel", "jakiro.model.tree_drafter:make_tree_drafter",
               label="EAGLE-2"),
    MethodSpec("jakiro_star", "jakiro_star.model.head:JakiroStarHead",
               "jakiro_star.model.drafter:make_star_drafter", training_loss="jakiro_star.train.losses:star_loss",
               label="Jakiro*"),
    MethodSpec("kangaroo", "kangaroo.model.adapter:KangarooAdapter", "kangaroo.model.drafter:make_kangaroo_drafter",
               head_init="kangaroo.model.adapter:init_adapter", training_loss=None, label="Kangaroo",
               config_class="kangaroo.model.config:KangarooConfig",
               training_recipe="kangaroo.train.recipe:AdapterRecipe",
               model_card="kangaroo.train.model_card:card_text"),
)}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def method_spec(method: str) -> MethodSpec:
    """The registry entry of ``method``; a one-line error for a method this installation cannot run."""
    from .model.configs import METHODS

    if method in METHOD_SPECS:
        return METHOD_SPECS[method]
    if method in METHODS:
        raise ConfigError(f"method {method!r} has no implementation registered in jakiro.methods: "
                          f"use a head of {', '.join(METHOD_SPECS)}")
    raise ConfigError(f"unknown method {method!r}: use one of {', '.join(METHOD_SPECS)}")


def head_class(method: str) -> type:
    return _import(method_spec(method).head_class)


def head_method(folder: str | os.PathLike) -> str:
    """The ``method`` a head folder's ``config.json`` declares (read without loading any weights)."""
    from .model.configs import read_config_json

    path, data = read_config_json(folder)
    method = data.get("method") if isinstance(data, dict) else None
    if not isinstance(method, str) or not method:
        raise CheckpointError(f"{path} names no 'method': it is not a jakiro draft head (re-export it)")
    return method


def check_method(found: str, expected: str | None, where: str | os.PathLike, role: str = "this model") -> None:
    """Refuse a head of another method with one line naming both methods."""
    if expected is not None and found != expected:
        raise ConfigError(f"{role} expects a {expected} head but {str(where)!r} is a {found} head: "
                          f"pass a {expected} head")


def load_head(folder: str | os.PathLike, base_model: "nn.Module | None" = None,
              expect_method: str | None = None, role: str = "this model") -> "nn.Module":
    """Load the head in ``folder`` with the class its own method names (bound to ``base_model`` if given)."""
    method = head_method(folder)
    check_method(method, expect_method, folder, role)
    return head_class(method).from_pretrained(folder, base_model=base_model)


def head_config(base_config, options: dict) -> tuple[Any, dict]:
    """Split ``options`` into a fresh head's configuration (for ``options["method"]``, default Jakiro/EAGLE-2)
    and the rest, which are that method's drafter options."""
    from dataclasses import fields

    method = options.get("method")
    config_class = _import(method_spec(method).config_class) if method is not None else _import(
        MethodSpec.config_class)
    names = {f.name for f in fields(config_class)}
    config = config_class.from_base_config(base_config, **{k: v for k, v in options.items() if k in names})
    return config, {k: v for k, v in options.items() if k not in names}


def new_head(config, base_model: "nn.Module | None" = None) -> "nn.Module":
    """A freshly initialised head of ``config.method`` (seed torch before calling for reproducibility)."""
    spec = method_spec(config.method)
    head = _import(spec.head_class)(config)
    _import(spec.head_init)(head)
    if base_model is not None:
        head.bind_base(base_model)
    return head


def make_drafter(ea_model: "EaModel") -> "Drafter":
    """The drafter of the method of ``ea_model``'s head, built from its tree settings and drafter options."""
    return _import(method_spec(ea_model.ea_layer.config.method).drafter_factory)(ea_model)


def training_loss(method: str):
    """The loss function that trains heads of ``method`` (see `MethodSpec.training_loss`)."""
    spec = method_spec(method)
    if spec.training_loss is None:
        raise ConfigError(f"method {method!r} has no draft-head loss: its heads train with their own recipe "
                          f"({spec.training_recipe})")
    return _import(spec.training_loss)


def training_recipe(method: str, run):
    """The `jakiro.train.loop.TrainingRecipe` that trains heads of ``method``, made from the run's configuration."""
    return _import(method_spec(method).training_recipe)(run)


def model_card_writer(method: str | None):
    """The function writing a ``method`` head's model card (`MethodSpec.model_card`); None for the core's card
    (also for a method not registered here, which the core card reports as it always has)."""
    spec = METHOD_SPECS.get(method) if method is not None else None
    return _import(spec.model_card) if spec is not None and spec.model_card is not None else None


def method_label(method: str) -> str:
    spec = METHOD_SPECS.get(method)
    return spec.label if spec and spec.label else method

"""The verification forward with each decoder layer fused into one C++ call (``csrc/fused_layer.cpp``).

With the panel kernel, the weights of an 8-row tree stream in about what one plain step's do; what remains
is the layer's glue (norms, rotary embeddings, cache writes, residual adds, SiLU: some 40 small tensor ops
per layer, dispatched from Python), which costs about as much again. `FusedDecoder` runs every layer as one
call of the extension: the same formulas on the model's own fp32 weights (q/k/v and gate/up packed side by
side, so each is one product), attention as batched products on the `TreeKVCache` buffers. Rotary angles come
from the model's own ``rotary_emb`` (any RoPE scaling it implements), the final norm is the model's module.

It applies to LLaMA-style decoders (LLaMA, Mistral without sliding windows, Qwen2, SmolLM2: RMS norms,
SwiGLU MLP, RoPE, optional q/k/v biases); `unsupported_reason` says why any other model keeps the
module-by-module forward. ``JAKIRO_FUSED_LAYERS=0`` turns it off (A/B measurements, debugging).
"""

from __future__ import annotations

import os
import weakref

import torch
from torch import nn

from .kv_cache import TreeKVCache

FUSED_SWITCH = "JAKIRO_FUSED_LAYERS"
MODEL_TYPES = ("llama", "mistral", "qwen2")  # decoders whose layer is exactly the fused layer's math
_SHARED: "weakref.WeakKeyDictionary[nn.Module, FusedDecoder]" = weakref.WeakKeyDictionary()


def fused_enabled() -> bool:
    """On unless ``JAKIRO_FUSED_LAYERS=0`` or MKL's products were asked for (``JAKIRO_FAST_KERNEL=mkl``)."""
    if os.environ.get("JAKIRO_FAST_KERNEL", "").strip().lower() == "mkl":
        return False
    return os.environ.get(FUSED_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def unsupported_reason(model: nn.Module) -> str | None:
    """None when every decoder layer of ``model`` is a LLaMA-style layer the fused call computes exactly."""
    config = model.config
    if getattr(config, "model_type", None) not in MODEL_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {MODEL_TYPES}"
    if getattr(config, "hidden_act", "silu") not in ("silu", "swish"):
        return f"activation {config.hidden_act!r} is not SiLU"
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "sliding-window attention layers"
    if config.model_type == "mistral" and getattr(config, "sliding_window", None):
        return "Mistral's sliding window"
    decoder = model.get_decoder()
    if not all(hasattr(decoder, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "not a LLaMA-style decoder (embed_tokens, layers, norm, rotary_emb)"
    weight = model.get_output_embeddings().weight
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return "only fp32 models on CPU"
    for layer in decoder.layers:
        attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        parts = [getattr(attention, name, None) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        parts += [getattr(mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
        if not all(isinstance(part, nn.Linear) for part in parts):
            return "a layer without the LLaMA projections"
        if any(getattr(attention, name, None) is not None for name in ("q_norm", "k_norm")):
            return "query/key norms"
        if any(part.bias is not None for part in parts[4:]):
            return "MLP biases"
        for norm in (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None)):
            if norm is None or not type(norm).__name__.endswith("RMSNorm") or not hasattr(norm, "variance_epsilon"):
                return "a layer without LLaMA's RMS norms"
        if layer.input_layernorm.variance_epsilon != layer.post_attention_layernorm.variance_epsilon:
            return "two norms with different epsilons"
    return None


class FusedDecoder:
    """Packed weights of every decoder layer and the loop that runs them through the fused call."""

    def __init__(self, model: nn.Module, kernel):
        self.kernel = kernel
        self.decoder = model.get_decoder()
        config = model.config
        first = self.decoder.layers[0].self_attn
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = first.head_dim
        self.intermediate = self.decoder.layers[0].mlp.gate_proj.out_features
        self.scaling = float(first.scaling)
        self.calls = 0  # whole forwards run fused (tests check the fused path really ran)
        self.layers = [self._pack(layer) for layer in self.decoder.layers]
        self.layer_rows = [0] * len(self.layers)  # rows each layer ran fused (tests count every layer's work)
        self._versions = self._weight_versions()

    def _weight_versions(self) -> list[tuple[int, int]]:
        return [(parameter.data_ptr(), parameter._version) for parameter in self.decoder.layers.parameters()]

    def sync_weights(self) -> None:
        """Pack the layers again if the model's weights were replaced or changed in place since the last packing.

        Checked when a generation starts (`TargetRunner.reset`), not per forward: the ~270 parameter checks
        of a 30-layer model cost about 0.2 ms, and weights cannot change in the middle of a generation."""
        versions = self._weight_versions()
        if versions != self._versions:
            self.layers = [self._pack(layer) for layer in self.decoder.layers]
            self._versions = versions

    @torch.no_grad()
    def _pack(self, layer: nn.Module) -> dict:
        attention, mlp, pack = layer.self_attn, layer.mlp, self.kernel.pack_panels
        qkv = (attention.q_proj, attention.k_proj, attention.v_proj)
        biases = [projection.bias for projection in qkv]
        if any(bias is not None for bias in biases):
            biases = [torch.zeros(p.out_features) if b is None else b.detach() for p, b in zip(qkv, biases)]
            qkv_bias = torch.cat(biases).contiguous()
        else:
            qkv_bias = None
        o_bias = attention.o_proj.bias
        return {"input_norm": layer.input_layernorm.weight.detach().contiguous(),
                "qkv": pack(torch.cat([p.weight.detach() for p in qkv]).contiguous()), "qkv_bias": qkv_bias,
                "o": pack(attention.o_proj.weight.detach().contiguous()),
                "o_bias": None if o_bias is None else o_bias.detach().contiguous(),
                "post_norm": layer.post_attention_layernorm.weight.detach().contiguous(),
                "gate_up": pack(torch.cat((mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach())).contiguous()),
                "down": pack(mlp.down_proj.weight.detach().contiguous()),
                "eps": float(layer.input_layernorm.variance_epsilon)}

    def ready(self, cache: TreeKVCache, allocate: bool = False) -> bool:
        """The cache's buffers exist and are fp32, contiguous (the first forward allocates them; with
        ``allocate`` an empty cache gets them here)."""
        if allocate and not any(getattr(layer, "is_initialized", False) for layer in cache.layers):
            empty = torch.empty(1, self.kv_heads, 0, self.head_dim)
            for layer in cache.layers:
                layer.lazy_initialization(empty, empty)
        return all(getattr(layer, "is_initialized", False) and layer.keys.is_contiguous()
                   and layer.keys.dtype == torch.float32 and layer.keys.shape[0] == 1 for layer in cache.layers)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor | None,
                cache: TreeKVCache) -> torch.Tensor:
        """Hidden states after the final norm [rows, H] for tokens [1, rows] at ``positions`` [1, rows].

        ``allowed`` [rows, length + rows] (bool, true = may attend) or None for "all cached keys and every
        earlier row" with one row. Every layer appends its rows to the cache, as the module forward does."""
        hidden = self.decoder.embed_tokens(input_ids)[0]
        hidden = self.run_layers(hidden, 0, len(self.layers), positions, allowed, cache)
        self.calls += 1
        return self.decoder.norm(hidden)

    @torch.no_grad()
    def run_layers(self, hidden: torch.Tensor, first: int, last: int, positions: torch.Tensor,
                   allowed: torch.Tensor | None, cache: TreeKVCache) -> torch.Tensor:
        """Decoder layers ``[first, last)`` on a residual stream [rows, H]: the stream after them (no final norm).

        The layers must hold the same number of cached positions (``allowed`` spans them plus the rows)."""
        hidden = hidden.reshape(-1, hidden.shape[-1]).contiguous()
        rows = hidden.shape[0]
        cos, sin = self.decoder.rotary_emb(hidden[None], position_ids=positions.reshape(1, rows))
        cos, sin = cos[0].contiguous(), sin[0].contiguous()
        mask = None  # additive, made once for every layer
        if allowed is not None:
            mask = torch.zeros(allowed.shape, dtype=hidden.dtype).masked_fill_(~allowed, torch.finfo(hidden.dtype).min)
        fused = self.kernel.fused_decoder_layer
        for index in range(first, last):
            weights, layer = self.layers[index], cache.layers[index]
            start = layer.length
            if mask is not None and mask.shape[1] != start + rows:
                raise RuntimeError(f"fused layers: mask spans {mask.shape[1]} keys, the layer holds {start} + {rows}")
            hidden = fused(hidden, weights["input_norm"], weights["qkv"], weights["qkv_bias"], weights["o"],
                           weights["o_bias"], weights["post_norm"], weights["gate_up"], weights["down"],
                           layer.keys, layer.values, start, cos, sin, mask, self.heads, self.kv_heads,
                           self.head_dim, self.intermediate, weights["eps"], self.scaling)
            layer.length = start + rows
            self.layer_rows[index] += rows
        return hidden


def fused_layers_apply(model: nn.Module) -> bool:
    """Whether `shared_fused_decoder` would give this model a fused decoder (without packing any weights)."""
    if not fused_enabled() or unsupported_reason(model) is not None:
        return False
    from . import panel_gemm

    kernel = panel_gemm.load()
    return kernel is not None and hasattr(kernel, "fused_decoder_layer")


def shared_fused_decoder(model: nn.Module) -> FusedDecoder | None:
    """One `FusedDecoder` per base model (its packed weights are a copy of the decoder's), or None where the
    fused call does not apply: switched off, kernel not built, or a model it does not compute exactly."""
    if not fused_layers_apply(model):
        return None
    if model not in _SHARED:
        from . import panel_gemm

        _SHARED[model] = FusedDecoder(model, panel_gemm.load())
    return _SHARED[model]

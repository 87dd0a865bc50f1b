"""Switching LoRA adapters between passes without walking the whole model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("lib_multipass")


class LoraSwitch:
    """The pipeline's LoRA layers, found once per loaded file, and the adapters they run.

    peft's `set_adapters`/`disable_lora` walk every module of the UNet and the text encoder
    (thousands) at each call, twice a job; here a switch touches only the LoRA layers, and
    only when a pass asks for other adapters or weights than the pass before it.

    Static mode (the compiled fast path): every layer runs every adapter it holds, each scale a
    tensor changed in place, so switching changes no Python state a compiled graph is guarded
    on (no recompile, and a CUDA graph replays with the new scales). An adapter that is off runs
    at scale 0: its layers add exactly 0, so the base pass's image is the base model's.
    """

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.state: tuple[tuple[str, float], ...] | None = None  # None: not known (set it anew)
        self.static = False
        self._units: dict[tuple[int, str], float] = {}  # (layer, adapter) -> peft's scale at weight 1

    def find_layers(self, *models: Any) -> None:
        """After a LoRA file is loaded: the LoRA layers found anew, and the state set anew."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for model in models for m in model.modules() if isinstance(m, BaseTunerLayer)]
        self.state = None
        if self.static:
            self._make_static()

    def make_static(self) -> None:
        """Switch to static mode (see the class), where every layer allows it."""
        self.static = True
        self._make_static()

    def _make_static(self) -> None:
        import torch
        from peft.tuners.lora import LoraLayer

        plain = [layer for layer in self.layers
                 if isinstance(layer, LoraLayer) and not getattr(layer, "lora_variant", None)]
        if len(plain) != len(self.layers):  # LoHa/LoKr/DoRA: scale 0 is not "off" there
            log.info("a LyCORIS or DoRA LoRA is loaded: switching it recompiles the fast path")
            self.static = False
            return
        for layer in self.layers:
            names = list(layer.scaling)
            layer.set_adapter(names, inference_mode=True)
            layer._disable_adapters = False
            device = layer.lora_A[names[0]].weight.device
            for name in names:
                if isinstance(layer.scaling[name], float):
                    layer.set_scale(name, 1.0)  # peft's own formula (alpha / rank, rsLoRA)
                    self._units[id(layer), name] = layer.scaling[name]
                    layer.scaling[name] = torch.zeros((), dtype=torch.float32, device=device)
        self.state = None

    def apply(self, weights: Mapping[str, float]) -> None:
        """Run exactly the adapters in `weights` (adapter -> weight; empty: none)."""
        state = tuple(weights.items())
        if state == self.state:
            return
        names = list(weights)
        for layer in self.layers:
            if self.static:
                for name, scale in layer.scaling.items():
                    scale.fill_(self._units[id(layer), name] * weights.get(name, 0.0))
                continue
            if not names:
                layer.enable_adapters(False)
                continue
            present = [name for name in names if name in layer.scaling]
            layer.set_adapter(present, inference_mode=True)  # no grads: inference only
            for name in present:
                layer.set_scale(name, weights[name])
            layer._disable_adapters = False  # enable_adapters(True) would make them trainable again
        self.state = state

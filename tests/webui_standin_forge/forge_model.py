"""Forge's `sd_model` as the adapter meets it (backend/diffusion_engine/base.py, processing.py,
extensions-builtin/sd_forge_lora/networks.py at dfdcbab6): a patcher set rebuilt from
`forge_objects_original` for every batch; `load_networks` skips when the LoRA list's hash is
the one loaded last, else loads the LoRAs into a fresh copy and keeps it as
`forge_objects_after_applying_lora`, which every sampling starts from; ControlNet units are
added to the sampling's own copy."""

from __future__ import annotations


class ForgeObjects:
    def __init__(self, loras: tuple = (), controls: tuple = ()):
        self.loras, self.controls = tuple(loras), list(controls)

    def shallow_copy(self) -> ForgeObjects:
        return ForgeObjects(self.loras, tuple(self.controls))


class ForgeModel:
    def __init__(self):
        self.forge_objects_original = ForgeObjects()
        self.forge_objects = self.forge_objects_original.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.current_lora_hash = str([])
        self.loads = 0

    def load_networks(self, names: list[str]) -> None:
        """networks.load_networks: an unknown name fails halfway (the previous set stays)."""
        import networks

        if any(name not in networks.available_networks for name in names):
            raise AttributeError("'NoneType' object has no attribute 'filename'")
        compiled = str(list(names))
        if compiled == self.current_lora_hash:
            return
        self.current_lora_hash = compiled
        self.forge_objects = self.forge_objects_original.shallow_copy()
        self.forge_objects.loras = tuple(names)
        self.loads += 1
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()

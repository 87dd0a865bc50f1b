"""Mask models named by a hub id, kept as folders under the host's models folder.

SAM and the subject detector are fetched once, on first use, into `<models>/<kind>/owner--name`
(the WebUI's `models/`), with a log line saying what and how large; later jobs load the folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from ..model_cache import HUB_ID

log = logging.getLogger(__name__)


def local_weights(source: str, models_dir: Path | None, what: str, example: str, size: str | None, off: str) -> str:
    """`source` as a folder: itself, or its copy under `models_dir`, fetched there on first use.

    `what` names the model in messages ("SAM", "subject detector"), `example` a hub id of its
    kind, `size` its download size when known, `off` how to do without it."""
    if Path(source).is_dir() or models_dir is None:
        return source
    if not HUB_ID.fullmatch(source):
        raise ModelNotFoundError(f"{what} weights {source!r}: no such folder (nor a hub id like {example})")
    folder = models_dir / source.replace("/", "--")
    if (folder / "config.json").is_file():
        return str(folder)
    from huggingface_hub import snapshot_download

    log.info("downloading %s (%s) into %s for the %s (once)", source, size or "size unknown", folder, what)
    try:
        snapshot_download(source, local_dir=str(folder), allow_patterns=["*.json", "*.txt", "*.safetensors"])
        if not any(folder.glob("*.safetensors")):  # an older repository: its pickled weights
            snapshot_download(source, local_dir=str(folder), allow_patterns=["pytorch_model.bin"])
    except Exception as err:  # offline, unknown id, disk full: said once by the caller
        raise ModelNotFoundError(f"{what} weights {source!r} could not be downloaded ({err.__class__.__name__}): "
                                 f"put them in {folder}, or {off}") from None
    return str(folder)


class HubModel:
    """A transformers model and its processor from a folder or hub id (fetched once into
    `models_dir`), loaded on first use; a failed load is remembered, so a job never retries a
    download the last one could not make. Subclasses name what they are and their classes."""

    what = "model"  # in messages: "SAM", "subject detector"
    kind = "model"  # what another folder must hold: "SAM", "OWL-ViT/OWLv2 model"
    example = ""  # a hub id of its kind
    sizes: Mapping[str, str] = {}  # download sizes of known hub ids
    off = ""  # how to do without it
    without = ""  # what a job does without it, for the log

    def __init__(self, source: str, device: str = "cpu", models_dir: Path | None = None):
        self.source = source
        self.device = device
        self.models_dir = models_dir
        self._model: Any = None
        self._processor: Any = None
        self.error: ModelNotFoundError | None = None

    def classes(self) -> tuple[Any, Any]:
        """(processor class, model class), imported when first loaded."""
        raise NotImplementedError

    def load(self) -> None:
        if self._model is not None:
            return
        if self.error is not None:
            raise self.error
        processor_class, model_class = self.classes()
        try:
            weights = local_weights(self.source, self.models_dir, self.what, self.example, self.sizes.get(self.source),
                                    self.off)
            try:
                self._processor = processor_class.from_pretrained(weights)
                model: Any = model_class.from_pretrained(weights)
            except (OSError, ValueError, KeyError) as err:
                raise ModelNotFoundError(f"{self.what} weights not found at {weights!r} ({err.__class__.__name__}): "
                                         f"give a folder holding {self.example} or another {self.kind}, or "
                                         f"{self.off}") from None
        except ModelNotFoundError as err:
            log.warning("%s; %s", err, self.without)
            self.error = err
            raise
        self._model = model.to(self.device).eval()

    def unload(self) -> None:
        self._model = self._processor = None

"""Mask models named by a hub id, kept as folders under the host's models folder.

SAM and the subject detector are fetched once, on first use, into `<models>/<kind>/owner--name`
(the WebUI's `models/`), with a log line saying what and how large; later jobs load the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

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

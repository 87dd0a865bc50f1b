"""The subject detector a CLI flag or a WebUI setting names: OWL (masks/detector.py) by folder,
hub id or 'default', or NanoDet (masks/nanodet.py) by 'nanodet'. Apart from both, so neither
module imports the other's weights code."""

from __future__ import annotations

from pathlib import Path

from .detector import NANODET, BoxDetector, SubjectDetector
from .nanodet import NanoDetDetector


def make_detector(source: str | None, device: str = "cpu",
                  models_dir: Path = Path("models/owlvit")) -> BoxDetector | None:
    """`source` a folder or hub id, 'default' for OWL's default weights, 'nanodet' for NanoDet
    (into `models_dir`'s sibling `nanodet`); None or '' for none."""
    if not source:
        return None
    if source.lower() == NANODET:
        return NanoDetDetector(models_dir.parent / NANODET)
    return SubjectDetector(None if source == "default" else source, device, models_dir)

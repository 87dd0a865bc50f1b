"""The models the extension keeps loaded in the WebUI process: the segmenter, the face
detector, face swap's ONNX sessions and reference photos, in one `ModelCache` that the
script empties when the WebUI unloads its scripts (Reload UI), so no model outlives the code
that loaded it."""

from __future__ import annotations

from ..model_cache import ModelCache

MODELS = ModelCache()

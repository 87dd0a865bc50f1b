"""The "Preview mask" action: the mask the current mask controls give, over an uploaded image
or the last image this tab made, with its area and subjects in words."""

from __future__ import annotations

from html import escape
from typing import Any

from PIL import Image

from ..errors import MultipassError
from .summary import options_from_ui

MASK_CONTROLS = ("mask_prompt", "mask_negative", "mask_threshold", "mask_dilate", "mask_blur", "mask_invert",
                 "mask_image")


def preview_mask(last_images: dict[str, Image.Image], segmenter_for: Any, detect_faces: Any, detector_for: Any,
                 tab: str, source: Image.Image | None, *values: Any) -> tuple[Image.Image | None, str]:
    """(overlay image, note). `segmenter_for()` gives the WebUI's shared segmenter,
    `detect_faces(image, box)` its face detector and `detector_for()` its subject detector (or
    None): the job's mask stage, people first, but without SAM's edges (no download for a
    preview; the subject detector finds the subjects, so the preview has it too)."""
    from ..masks import masking
    from ..standalone.mask import compute_mask, overlay

    image = source if source is not None else last_images.get(tab)
    if image is None:
        return None, "<small>Upload an image to preview on, or generate one in this tab first.</small>"
    image = image.convert("RGB")
    try:
        options = options_from_ui(dict(zip(MASK_CONTROLS, values)))
        if options.mask_image:
            alpha = masking.feather(masking.load_mask_image(options.mask_image, image.size)[0], options.mask_blur)
            report: dict[str, Any] = {"area": float((alpha > 0).mean()), "instances": []}
        else:
            _, alpha, report = compute_mask(image, options, segmenter_for(), detect_faces=detect_faces,
                                            detector=detector_for())
    except MultipassError as err:
        return None, f'<small class="multipass-problem">{escape(str(err))}</small>'
    words = f"mask covers {report['area']:.1%} of the image; {len(report['instances'])} subject(s) found"
    if report.get("warning"):
        words += f"; {report['warning']}"
    return overlay(image, alpha), f"<small>{escape(words)}</small>"

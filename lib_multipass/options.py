"""Every multipass setting with its default, range and infotext key.

Validation lives only here. The same `MultipassOptions` is built from UI controls, the
API's dict, XYZ values, pasted infotext, CLI arguments and prompt flags (flags win).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import OptionsError
from .images import describe, is_inline

OptionKind = Literal["bool", "int", "float", "terms", "length", "str", "image", "choice"]
MAX_PIXELS = 4096  # the largest mask_dilate in px (as large as an image side may be)
MAX_TEXT = 1024  # characters of a text option or term (an inline base64 image may be longer)
MAX_TERMS = 32


@dataclass(frozen=True)
class Length:
    """A size in pixels, or in percent of the image's short side (`-20` / `-20%`)."""

    value: float
    percent: bool = False

    @classmethod
    def parse(cls, raw: Any, field_name: str = "length") -> Length:
        if isinstance(raw, Length):
            return raw
        if isinstance(raw, bool):
            raise OptionsError(f"`{field_name}` must be pixels like 8 or a percent like -20%, got {raw!r}", field_name)
        match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*", str(raw))
        if not match or (not match.group(2) and "." in match.group(1)):
            raise OptionsError(
                f"`{field_name}` must be whole pixels like 8 or -4, or a percent of the short side like -20%, got {raw!r}",
                field_name,
            )
        length = cls(float(match.group(1)), bool(match.group(2)))
        limit = 100 if length.percent else MAX_PIXELS
        if abs(length.value) > limit:
            raise OptionsError(f"`{field_name}` must be from -{limit:g} to {limit:g}{'%' if length.percent else ' px'}, "
                               f"got {raw!r}", field_name)
        return length

    def pixels(self, short_side: int) -> int:
        """The length in pixels for an image whose short side is `short_side`."""
        if self.percent:
            return int(round(self.value * short_side / 100.0))
        return int(self.value)

    def to_json(self) -> int | str:
        return str(self) if self.percent else int(self.value)

    def __str__(self) -> str:
        number = str(int(self.value)) if float(self.value).is_integer() else repr(float(self.value))
        return f"{number}%" if self.percent else number


#: which tab of the WebUI accordion a control sits in ("" = the row above the tabs)
Tab = Literal["", "Mask", "Person pass", "Faces", "ControlNet", "Finish"]
Widget = Literal["checkbox", "slider", "text", "dropdown", "image", "files"]
SAME_SAMPLER = "Use same sampler"  # what the sampler dropdown shows for "as the main sampler"
NONE_CHOICE = "None"  # what a dropdown shows for "none" (no ControlNet)
LANCZOS = "Lanczos"  # the upscaler every host has


@dataclass(frozen=True)
class Control:
    """How the WebUI accordion shows an option; `webui/ui.py` turns it into a gradio widget.

    `unset` is what the control shows for an optional option left unset (0 for "as the main
    steps", "None"); `listing` names a list only the host knows (its samplers, its ControlNet
    models) that a dropdown offers after `unset`; `group` puts the control in a collapsed
    accordion of its tab; `top` ends a slider below the option's own maximum."""

    tab: Tab
    label: str
    widget: Widget
    row: int = 0
    step: float = 1.0
    top: float | None = None
    unset: Any = None
    listing: Literal["", "samplers", "controlnet_models", "upscalers"] = ""
    group: str = ""
    rgba: bool = False  # an image upload that keeps its alpha (a mask)


@dataclass(frozen=True)
class Spec:
    """One option, declared once: type, range, infotext label, help, and every surface it
    shows on: a prompt flag, a `run`/`mask` CLI flag, a WebUI control, an X/Y/Z axis."""

    kind: OptionKind
    label: str
    help: str
    lo: float | None = None
    hi: float | None = None
    optional: bool = False
    flag: bool = False  # a `--name value` prompt flag
    choices: tuple[str, ...] = ()
    axis: str | None = None  # the X/Y/Z plot axis name ("[Multipass] <axis>"); None: no axis
    control: Control | None = None  # None: API dict, infotext, flags and CLI only
    cli: bool = True  # a flag of the `run` command (`--name-with-dashes`, `--name_with_underscores`)
    cli_alias: str | None = None  # an older name of that CLI flag, still accepted


def _opt(default: Any, kind: OptionKind, label: str, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(kind, label, help, **spec)})


def _ui(tab: Tab, label: str, widget: Widget, **control: Any) -> Control:
    return Control(tab, label, widget, **control)


@dataclass(frozen=True)
class MultipassOptions:
    """All settings of one multipass job. Build with `from_dict`/`with_flags` to validate.

    The options with a WebUI control come first, in the order of the script's positional
    args (API clients that send the UI's list rely on it): add a new option at the end."""

    enabled: bool = _opt(True, "bool", "Multipass enabled", "run the multipass passes", axis="Enable", cli=False,
                         control=_ui("", "Enable multipass", "checkbox"))  # off in a new tab, as in a pasted plain job
    denoising_strength: float = _opt(
        0.75, "float", "Multipass denoise", "strength of the person pass", lo=0, hi=1, flag=True, axis="Person denoise",
        control=_ui("Person pass", "Person denoise", "slider", step=0.01))
    mask_prompt: tuple[str, ...] = _opt(
        ("person",), "terms", "Multipass mask prompt", "what to mask in the base image", flag=True, axis="Mask prompt",
        control=_ui("Mask", "Mask prompt (what to in-paint; | between terms)", "text"))
    mask_negative: tuple[str, ...] = _opt(
        (), "terms", "Multipass mask negative", "subtracted from the mask", flag=True,
        control=_ui("Mask", "Mask negative (left out, e.g. clothes)", "text"))
    mask_invert: bool = _opt(False, "bool", "Multipass mask invert", "in-paint all but the mask", flag=True,
                             control=_ui("Mask", "Invert", "checkbox", row=1))
    mask_dilate: Length = _opt(
        Length(4), "length", "Multipass mask dilate", "grow the mask (negative shrinks), px or N%", flag=True,
        axis="Mask dilate", control=_ui("Mask", "Dilate (px or % of the short side; - shrinks)", "text", row=1))
    mask_blur: int = _opt(4, "int", "Multipass mask blur", "feather of the paste-back edge, px", lo=0, hi=256, flag=True,
                          axis="Mask blur", control=_ui("Mask", "Blur (feather, px)", "slider", row=1, top=64))
    mask_threshold: float = _opt(
        0.4, "float", "Multipass mask threshold", "segmentation cut-off", lo=0, hi=1, flag=True,
        control=_ui("Mask", "Threshold", "slider", row=1, step=0.01))
    base_loras: bool = _opt(False, "bool", "Multipass base LoRAs", "keep base/common LoRAs in the base pass", flag=True,
                            control=_ui("", "Keep base/common LoRAs in the base pass", "checkbox"))
    person_steps: int | None = _opt(
        None, "int", "Multipass steps", "steps of the person pass (blank: as the base)", lo=1, hi=150, optional=True,
        axis="Person steps", control=_ui("Person pass", "Steps (0: as the main steps)", "slider", unset=0))
    person_cfg: float | None = _opt(
        None, "float", "Multipass CFG scale", "CFG of the person pass (blank: as the base)", lo=0, hi=30, optional=True,
        axis="Person CFG", control=_ui("Person pass", "CFG (0: as the main CFG)", "slider", step=0.5, unset=0))
    person_sampler: str | None = _opt(
        None, "str", "Multipass sampler", "sampler of the person pass (blank: as the base)", optional=True,
        axis="Person sampler",
        control=_ui("Person pass", "Sampler", "dropdown", unset=SAME_SAMPLER, listing="samplers"))
    save_passes: bool = _opt(
        False, "bool", "Multipass save passes", "save the base image, mask and each pass (API: return them too)",
        cli=False,  # the CLI writes every pass
        control=_ui("", "Save intermediate passes", "checkbox"))
    controlnet: str | None = _opt(
        None, "choice", "Multipass ControlNet", "ControlNet type guiding the passes", optional=True,
        choices=("pose", "canny", "depth", "lineart", "tile", "inpaint"),
        control=_ui("ControlNet", "Type (its preprocessor runs on the base image)", "dropdown", unset=NONE_CHOICE))
    controlnet_model: str | None = _opt(
        None, "str", "Multipass ControlNet model", "ControlNet weights: file, folder or hub id", optional=True,
        control=_ui("ControlNet", "Model", "dropdown", unset=NONE_CHOICE, listing="controlnet_models"))
    controlnet_conditioning_scale: float = _opt(
        1.0, "float", "Multipass ControlNet scale", "weight of ControlNet in the passes", lo=0, hi=2, flag=True,
        control=_ui("ControlNet", "Weight", "slider", row=1, step=0.05))
    controlnet_start: float = _opt(0.0, "float", "Multipass ControlNet start", "guidance start", lo=0, hi=1,
                                   control=_ui("ControlNet", "Guidance start", "slider", row=1, step=0.01))
    controlnet_end: float = _opt(1.0, "float", "Multipass ControlNet end", "guidance end", lo=0, hi=1,
                                 control=_ui("ControlNet", "Guidance end", "slider", row=1, step=0.01))
    controlnet_pose_from_base: bool = _opt(
        False, "bool", "Multipass ControlNet from base", "without an input image, guide the person pass by the base image",
        control=_ui("ControlNet", "Guide the person by the base image", "checkbox"))
    inpaint_faces: bool = _opt(
        False, "bool", "Multipass inpaint faces", "one more pass over each face, with its person's prompt and LoRA",
        control=_ui("Faces", "Inpaint faces (each person's prompt and LoRA)", "checkbox"))
    face_denoising_strength: float = _opt(
        0.4, "float", "Multipass face denoise", "strength of the face pass", lo=0, hi=1, flag=True, axis="Face denoise",
        control=_ui("Faces", "Face denoise", "slider", step=0.01))
    face_swap: bool = _opt(False, "bool", "Multipass face swap", "swap faces to the subject's reference photos",
                           axis="Face swap", control=_ui("Faces", "Face swap to the reference photos", "checkbox"))
    face_swap_images: tuple[str, ...] = _opt(
        (), "terms", "Multipass face swap images",
        "reference photos: files or folders; one folder per person prompt to give each its own face",
        control=_ui("Faces", "Face swap reference photos", "files", row=1))
    mask_image: str | None = _opt(
        None, "image", "Multipass mask image", "a mask image file used instead of segmentation", optional=True,
        control=_ui("Mask", "Mask image (instead of the mask prompt)", "image", rgba=True,
                    group="Mask image, and a preview of the mask"))
    controlnet_image: str | None = _opt(
        None, "image", "Multipass control image", "a ready hint image (else made from the input image)", optional=True,
        cli_alias="control-image", control=_ui("ControlNet", "Ready hint image (e.g. a pose skeleton)", "image", row=2))
    # -- options without a control: API dict, infotext, prompt flags and CLI only (rarely
    # changed fine-tuning, server-side model paths, modes the WebUI tab itself decides)
    mask_speck: float = _opt(
        0.001, "float", "Multipass mask speck", "drop mask parts smaller than this (fraction of the image)", lo=0, hi=1
    )
    mask_min_area: float = _opt(
        0.005, "float", "Multipass mask min area", "smaller masks skip the pass (fraction of the image)", lo=0, hi=1
    )
    mask_person_check: bool = _opt(
        True, "bool", "Multipass mask person check", "person prompts: in-paint only what has a face, a body "
        "(mediapipe's pose, standalone) or a subject detector's box; off: where none is found, the segmenter's map "
        "as it is", flag=True)
    input_image: str | None = _opt(
        None, "image", "Multipass input image", "a photo to mask and in-paint instead of a generated base", optional=True,
        cli_alias="init-image")
    inpaint_padding: int = _opt(
        32, "int", "Multipass padding", "context around the masked crop, px", lo=0, hi=1024
    )
    person_seed: int = _opt(
        -1, "int", "Multipass seed", "seed of person pass 1 (-1: image seed + pass number)", lo=-1, hi=2**32 - 1
    )
    face_crop_factor: float = _opt(
        2.0, "float", "Multipass face crop factor", "context around a face: crop = face size x this", lo=1, hi=6
    )
    face_min_size: int = _opt(20, "int", "Multipass face min size", "smaller faces are left alone, px", lo=0, hi=4096)
    face_max_faces: int = _opt(4, "int", "Multipass face max", "the largest faces in-painted per image", lo=1, hi=32)
    face_swap_model: str | None = _opt(
        None, "str", "Multipass face swap model", "path of inswapper_128.onnx (else models/insightface)", optional=True
    )
    face_recognition_model: str | None = _opt(
        None, "str", "Multipass face recognition model", "path of w600k_r50.onnx (else models/insightface)",
        optional=True,
    )
    face_swap_upscale: bool = _opt(False, "bool", "Multipass face swap upscale", "paste the 128 px swap resampled at 4x")
    face_swap_first: bool = _opt(
        True, "bool", "Multipass face swap first", "swap, then inpaint faces (its low denoise fixes swap seams)"
    )
    face_correct: bool = _opt(
        False, "bool", "Multipass face correct", "restore faces after the passes (GFPGAN): in the WebUI its own "
        "restorer, as Restore faces; standalone the weights in face_correct_model", flag=True, axis="Face correct",
        control=_ui("Faces", "Restore faces after the passes", "checkbox", row=1))
    face_correct_model: str | None = _opt(
        None, "str", "Multipass face correct model", "standalone: GFPGAN weights for face_correct, a path; blank: "
        "GFPGANv1.4, downloaded once into models/GFPGAN", optional=True)
    controlnet_txt2img: bool = _opt(
        False, "bool", "Multipass ControlNet txt2img",
        "on: the base is txt2img guided by the hint (pose kept, looks free); off: the input image is its img2img init",
    )
    base_denoising_strength: float = _opt(
        0.75, "float", "Multipass base denoise", "strength of the base pass when the input image is its init",
        lo=0, hi=1,
    )
    color_grading: str | None = _opt(
        None, "str", "Multipass color grading", "a film look (Film Velvia, Film Portra, Ektar) or a .cube LUT file, "
        "applied to the finished image", optional=True, flag=True, axis="Color grading",
        control=_ui("Finish", "Colour grading: Film Velvia, Film Portra, Ektar, or a .cube file", "text", unset=""))
    color_grading_strength: float = _opt(
        1.0, "float", "Multipass color grading strength", "how much of the look: 0 none, 1 all of it", lo=0, hi=1,
        flag=True, control=_ui("Finish", "Grading strength", "slider", step=0.05))
    color_match: bool = _opt(
        True, "bool", "Multipass color match", "take the in-painted subject's colour cast out near the mask's edge "
        "(no seam; the subject's own colours stay)", flag=True, axis="Color match",
        control=_ui("Person pass", "Colour match at the mask's edge", "checkbox", row=1))
    use_lpw: bool = _opt(
        True, "bool", "Multipass prompt weights", "standalone: read (word:1.2), (word), [word] and prompts over 77 "
        "tokens as the WebUI does (it always does); off: the prompt reaches CLIP as plain text, cut at 77 tokens")
    hires_denoising_strength: float | None = _opt(
        None, "float", "Multipass harmonize denoise",
        "harmonizing pass: a low-denoise img2img of the whole composite after the person and face passes, to blend "
        "light and edges (Astria's hires pass; 0.3-0.4 is usual); blank: off", lo=0, hi=1, optional=True, flag=True,
        axis="Harmonize denoise", control=_ui("Finish", "Harmonize denoise (0: off)", "slider", step=0.05, unset=0))
    hires_scale: float = _opt(
        1.0, "float", "Multipass harmonize upscale", "upscale the composite by this before the harmonizing pass "
        "(a hires fix); 1: same size", lo=1, hi=4, flag=True, axis="Harmonize upscale",
        control=_ui("Finish", "Harmonize upscale (x)", "slider", step=0.25, top=4))
    hires_upscaler: str | None = _opt(
        None, "str", "Multipass harmonize upscaler", "the upscaler before the harmonizing pass: the WebUI's by name; "
        "standalone: Lanczos, Latent or the path of upscaler weights; blank: Lanczos", optional=True, flag=True,
        control=_ui("Finish", "Harmonize upscaler", "dropdown", listing="upscalers", unset=LANCZOS))
    super_resolution: int = _opt(
        1, "int", "Multipass super resolution", "upscale the finished image by 2 or 4 before grading and grain (1: off)",
        lo=1, hi=4, flag=True, axis="Super resolution", control=_ui("Finish", "Super resolution (x)", "slider", top=4))
    super_resolution_upscaler: str | None = _opt(
        None, "str", "Multipass upscaler", "the WebUI's upscaler by name (R-ESRGAN 4x+, ...); standalone: the path "
        "of upscaler weights (RealESRGAN_x4plus.pth, ...); blank: Lanczos", optional=True, flag=True,
        control=_ui("Finish", "Upscaler", "dropdown", listing="upscalers", unset=LANCZOS))
    film_grain: float = _opt(
        0.0, "float", "Multipass film grain", "grain strength, 0 off; seeded by the image's seed, the last step",
        lo=0, hi=1, flag=True, axis="Film grain", control=_ui("Finish", "Film grain", "slider", step=0.05))

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MultipassOptions:
        """Validated options from a plain dict (API, infotext, CLI); unknown keys are errors."""
        return cls().replace(**dict(values))

    def replace(self, **values: Any) -> MultipassOptions:
        """A copy with `values` converted and checked; errors name the field."""
        specs = option_specs()
        for name in values:
            if name not in specs:
                close = difflib.get_close_matches(name, specs, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; known options: {', '.join(specs)}"
                raise OptionsError(f"unknown option `{name}`{hint}", name)
        converted = {name: convert(name, value) for name, value in values.items()}
        return dataclasses.replace(self, **converted)

    def with_flags(self, flags: Mapping[str, Any]) -> MultipassOptions:
        """Prompt flags override the given values."""
        return self.replace(**dict(flags))

    # -- output -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; `from_dict(to_dict())` gives the same options."""
        return {name: to_json(getattr(self, name)) for name in option_specs()}

    def infotext_params(self) -> dict[str, str]:
        """`{label: value}` for every option that differs from its default (WebUI style)."""
        default = MultipassOptions()
        out: dict[str, str] = {}
        for name, spec in option_specs().items():
            value = getattr(self, name)
            if value != getattr(default, name):
                out[spec.label] = format_value(value)
        return out


def option_specs() -> dict[str, Spec]:
    """Field name -> Spec, in declaration order."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(MultipassOptions)}


def flag_specs() -> dict[str, Spec]:
    """The options that may be written as `--flag` in a prompt."""
    return {name: spec for name, spec in option_specs().items() if spec.flag}


def to_json(value: Any) -> Any:
    if isinstance(value, Length):
        return value.to_json()
    if isinstance(value, tuple):
        return list(value)
    return value


def format_value(value: Any) -> str:
    """The infotext text of a value; an inline image is described, never written out."""
    if isinstance(value, tuple):
        return " | ".join(describe(item) for item in value)
    return describe(value) if isinstance(value, str) else str(value)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def convert(name: str, value: Any) -> Any:
    """Convert one raw value (from JSON, a UI control or a string) to the option's type."""
    spec = option_specs()[name]
    if value is None or (spec.optional and isinstance(value, str) and not value.strip()):
        if spec.optional:
            return None
        raise OptionsError(f"`{name}` needs a value ({spec.help})", name)
    return _CONVERTERS[spec.kind](name, spec, value)


def number_text(x: float) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09; 0.5 stays 0.5."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def range_text(spec: Spec) -> str:
    """`0..1` for a bounded number, else empty."""
    return f"{number_text(spec.lo)}..{number_text(spec.hi)}" if spec.lo is not None and spec.hi is not None else ""


def cli_names(name: str, spec: Spec) -> list[str]:
    """An option's CLI flag as --help and README show it: dashes, then an older alias."""
    return [f"--{name.replace('_', '-')}"] + ([f"--{spec.cli_alias}"] if spec.cli_alias else [])


def _describe_range(spec: Spec) -> str:
    if spec.lo is None or spec.hi is None:
        return ""
    return f" from {number_text(spec.lo)} to {number_text(spec.hi)}"


def _number(name: str, spec: Spec, value: Any, cast: type) -> Any:
    kind = "a whole number" if cast is int else "a number"
    bad = OptionsError(f"`{name}` must be {kind}{_describe_range(spec)}, got {value!r}", name)
    if isinstance(value, bool):
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if not math.isfinite(number) or (cast is int and not number.is_integer()):
        raise bad
    if (spec.lo is not None and number < spec.lo) or (spec.hi is not None and number > spec.hi):
        raise bad
    return cast(number)


def _bool(name: str, spec: Spec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionsError(f"`{name}` must be true or false, got {value!r}", name)


def _terms(name: str, spec: Spec, value: Any) -> tuple[str, ...]:
    """A string (split on `|`) or a list of strings; empty terms are dropped."""
    items: Iterable[Any] = value.split("|") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) and not isinstance(value, str):
        raise OptionsError(f"`{name}` must be text or a list of texts, got {value!r}", name)
    terms = tuple(term for term in (str(item).strip() for item in items) if term)
    if len(terms) > MAX_TERMS:
        raise OptionsError(f"`{name}` takes at most {MAX_TERMS} terms, got {len(terms)}", name)
    long = next((term for term in terms if len(term) > MAX_TEXT and not is_inline(term)), None)
    if long is not None:
        raise OptionsError(f"`{name}`: a term is longer than {MAX_TEXT} characters ({long[:40]!r}...)", name)
    return terms


def _choice(name: str, spec: Spec, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in spec.choices:
        raise OptionsError(f"`{name}` must be one of {', '.join(spec.choices)}, got {value!r}", name)
    return text


def _str(name: str, spec: Spec, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionsError(f"`{name}` must be text, got {value!r}", name)
    if len(value) > MAX_TEXT:
        raise OptionsError(f"`{name}` is longer than {MAX_TEXT} characters", name)
    return value


def _image(name: str, spec: Spec, value: Any) -> str:
    """A server path, or an inline base64 image (data URL or bare base64)."""
    if not isinstance(value, str):
        raise OptionsError(f"`{name}` must be a file path or a base64 image, got {type(value).__name__}", name)
    if value.startswith("inline image ("):
        raise OptionsError(f"`{name}`: {value!r} is what infotext shows for an image sent inline; "
                           "send the image again", name)
    return value if is_inline(value) else _str(name, spec, value)


_CONVERTERS = {
    "bool": _bool,
    "int": lambda name, spec, value: _number(name, spec, value, int),
    "float": lambda name, spec, value: _number(name, spec, value, float),
    "terms": _terms,
    "length": lambda name, spec, value: Length.parse(value, name),
    "str": _str,
    "image": _image,
    "choice": _choice,
}

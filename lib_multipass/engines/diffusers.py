"""Standalone engine on diffusers: one set of loaded components for every pass.

txt2img and in-paint pipelines share the same modules (no reload, no copy). LoRAs are
loaded once as peft adapters and switched per pass: enabled for a person pass, disabled
for the base pass (bit-exact; never fused, since fusing drifts the base weights).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    TCDScheduler,
)
from PIL import Image

from ..control.hints import inpaint_condition, make_hint
from ..errors import ModelNotFoundError, MultipassError, PassInterrupted
from ..faces.detect import Face, FaceDetector, faces_in, make_face_detector
from ..image_models import load_image_model, upscale_with
from ..lora_files import find_loras
from ..masks.bodies import PoseBodyFinder, make_body_finder
from ..masks.colour import matched
from ..masks.crop import Box, crop_box, paste
from ..masks.detector import BoxDetector, boxes_of
from ..masks.refine import SamRefiner
from ..masks.segmenters import Segmenter, probabilities_in
from ..model_cache import HUB_ID, ModelCache
from ..options import LANCZOS
from ..prompt import LoraTag
from ..prompt_weights import WINDOW, emphasize, weighted_tokens, windows
from ..samplers import canonical_sampler
from .base import ControlInput, GenerateRequest, InpaintRequest
from .latent_blend import LatentBlend
from .lora_loading import load_lora_file
from .lora_switch import LoraSwitch

#: canonical sampler name -> (scheduler class, config overrides)
SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "dpm++2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "dpm++sde": (DPMSolverSDEScheduler, {}),
    "dpm++sde_karras": (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
    "tcd": (TCDScheduler, {}),
}

#: pipeline classes by (mode, with ControlNet) of each model family; all are made with
#: `from_pipe` on one set of modules
PIPELINES = {
    "sd": {
        ("txt2img", False): StableDiffusionPipeline,
        ("img2img", False): StableDiffusionImg2ImgPipeline,
        ("inpaint", False): StableDiffusionInpaintPipeline,
        ("txt2img", True): StableDiffusionControlNetPipeline,
        ("img2img", True): StableDiffusionControlNetImg2ImgPipeline,
        ("inpaint", True): StableDiffusionControlNetInpaintPipeline,
    },
    "sdxl": {
        ("txt2img", False): StableDiffusionXLPipeline,
        ("img2img", False): StableDiffusionXLImg2ImgPipeline,
        ("inpaint", False): StableDiffusionXLInpaintPipeline,
        ("txt2img", True): StableDiffusionXLControlNetPipeline,
        ("img2img", True): StableDiffusionXLControlNetImg2ImgPipeline,
        ("inpaint", True): StableDiffusionXLControlNetInpaintPipeline,
    },
}
#: the pipeline class a model folder names in its model_index.json -> our family
FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}


def family_of(pipe: Any) -> str:
    """"sdxl" for an SDXL pipeline (two text encoders), else "sd" (SD 1.x/2.x)."""
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


def native_side(pipe: Any) -> int:
    """The side of the images the model was trained at (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL)."""
    return int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(source: str, config: str | None = None, device: str | None = None) -> Any:
    """An SD 1.x/2.x or SDXL pipeline from a WebUI-layout `.safetensors`, a diffusers folder or
    a hub id (its model_index.json read first: another model type fails before any download)."""
    device = device or default_device()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    path = Path(source)
    common: dict[str, Any] = {"dtype": dtype}
    sd_only = {"safety_checker": None, "requires_safety_checker": False}
    try:
        if path.is_file():
            if path.suffix != ".safetensors":
                raise MultipassError(
                    f"checkpoint {source!r}: only .safetensors files are loaded (a .ckpt can run code); "
                    "convert it to .safetensors"
                )
            local = config is not None and Path(config).is_dir()
            family = single_file_family(path)
            pipe = PIPELINES[family][("txt2img", False)].from_single_file(
                str(path), config=config, local_files_only=local, **common, **(sd_only if family == "sd" else {}))
        elif path.is_dir() or HUB_ID.fullmatch(source):
            if path.is_dir() and not (path / "model_index.json").is_file():
                raise ModelNotFoundError(
                    f"{source!r} is a folder without model_index.json; give a diffusers model folder "
                    "or a .safetensors checkpoint file"
                )
            family = folder_family(source)
            pipe = PIPELINES[family][("txt2img", False)].from_pretrained(
                source, **common, **(sd_only if family == "sd" else {}))
        else:
            raise ModelNotFoundError(
                f"checkpoint {source!r} not found; give a .safetensors file, a diffusers folder or a hub id"
            )
    except OSError as err:
        hint = (" (single-file checkpoints need --config DIR, a diffusers folder of the same model type, when the hub "
                "cannot be reached)") if path.is_file() else ""
        raise ModelNotFoundError(f"cannot load checkpoint {source!r}: {err}{hint}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def folder_family(source: str) -> str:
    """The family a diffusers folder or hub id holds, from its model_index.json alone."""
    from diffusers import DiffusionPipeline

    name = DiffusionPipeline.load_config(source).get("_class_name", "")
    if name not in FAMILIES:
        raise MultipassError(f"checkpoint {source!r} is a {name or 'pipeline of unknown type'}; the standalone engine "
                             "runs SD 1.x/2.x and SDXL models")
    return FAMILIES[name]


def single_file_family(path: Path) -> str:
    """SDXL when the file holds its second text encoder (`conditioner.embedders.1`), read
    from the safetensors header without loading anything."""
    import json

    with path.open("rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    return "sdxl" if any(key.startswith("conditioner.embedders.1.") for key in header) else "sd"


def make_scheduler(sampler: str, config: Any):
    cls: Any
    cls, overrides = SCHEDULERS[sampler]
    return cls.from_config(config, **overrides)


def crop_hint(control: ControlInput | None, box: tuple[int, int, int, int], size: tuple[int, int],
              crop: Image.Image, mask: Image.Image) -> Any:
    """The unit's hint for an in-paint crop: the same box and scale as the image crop."""
    if control is None:
        return None
    if control.kind == "inpaint":
        return inpaint_condition(crop, mask)
    return control.hint.convert("RGB").crop(box).resize(size, Image.Resampling.BILINEAR)


def at_least_one_step(steps: int, strength: float | None) -> int:
    """Steps for a pass of `strength`: img2img runs steps x strength of them, and diffusers
    refuses fewer than one (1 step at 0.75, 20 at 0.04): then it runs one, as the WebUI does."""
    if not strength or steps * strength >= 1:
        return steps
    return math.ceil(1 / strength)


def _own(output: Any) -> Any:
    """The UNet's output copied out of the CUDA graph's memory (a scheduler may keep it)."""
    if isinstance(output, tuple):
        return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in output)
    return type(output)(sample=output.sample.clone())


def _adapter_name(lora_name: str) -> str:
    return "mp_" + re.sub(r"\W", "_", lora_name)


class DiffusersEngine:
    """The `Engine` protocol on one loaded diffusers pipeline."""

    def __init__(self, pipe: Any, lora_dir: str | Path | None = None,
                 segmenter: Segmenter | None = None, face_detector: FaceDetector | None = None,
                 refiner: SamRefiner | None = None, bodies: PoseBodyFinder | None = None,
                 detector: BoxDetector | None = None):
        """`pipe`: a StableDiffusionPipeline (typed loosely: diffusers adds its modules and LoRA
        methods at run time, which a type checker cannot see)."""
        self.pipe = pipe
        self.family = family_of(pipe)
        self.face_detector = face_detector or make_face_detector()
        self.lora_dir = lora_dir
        self.segmenter = segmenter
        self.refiner = refiner
        self.detector = detector
        self.bodies = bodies if bodies is not None else make_body_finder()
        self.weighted_prompts = True  # prompts read as the WebUI reads them (use_lpw); False: as text
        self.adapters: dict[str, str] = {}  # LoRA name -> loaded adapter name
        self.loras = LoraSwitch()  # the LoRA layers, and which adapters they run now
        self._scheduler_config = self.pipe.scheduler.config
        self._pipes: dict[tuple[str, bool, str | None], Any] = {("txt2img", False, None): pipe}
        self._controlnets: dict[str, ControlNetModel] = {}
        self._stop = False
        self._blend: LatentBlend | None = None  # the in-paint pass's, while it runs
        self.models = ModelCache()  # face swap's sessions and references, for this engine's lifetime

    # -- Engine protocol --------------------------------------------------------------------

    def check_loras(self, names: Sequence[str]) -> None:
        """Found and loaded before the base pass: a broken file fails before any image is
        made, and a compiled UNet meets the job's LoRA layers in its first compile."""
        self._load(find_loras(self.lora_dir, list(names)))

    def txt2img(self, request: GenerateRequest) -> Image.Image:
        extra = self._control_kwargs(request.control, "image", request.control.hint if request.control else None)
        return self._call(self.pipeline("txt2img", request.control), request, width=request.width,
                          height=request.height, **extra)

    def img2img(self, request: GenerateRequest, image: Image.Image, denoise: float,
                upscaler: str = LANCZOS) -> Image.Image:
        size = (request.width, request.height)
        latent = upscaler.lower() == "latent" and image.size != size
        init = self.latent_upscale(image, size) if latent else self.upscale(image.convert("RGB"), size, upscaler)
        hint = request.control.hint.resize(size, Image.Resampling.BILINEAR) if request.control else None
        extra = self._control_kwargs(request.control, "control_image", hint)
        return self._call(self.pipeline("img2img", request.control), request, image=init, strength=denoise,
                          width=request.width, height=request.height, **extra)

    def upscale(self, image: Image.Image, size: tuple[int, int], upscaler: str = LANCZOS) -> Image.Image:
        """Lanczos, or the upscaler weights at the path `upscaler` (spandrel: ESRGAN, Real-ESRGAN,
        SwinIR, ...; loaded once, run in tiles)."""
        if image.size == size:
            return image
        if upscaler.lower() in ("lanczos", "latent"):
            return image.resize(size, Image.Resampling.LANCZOS)
        model = self.models.get(("upscaler", upscaler), lambda: load_image_model(upscaler))
        return upscale_with(model, image, size)

    def latent_upscale(self, image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """`image`'s latents resized to `size` / 8 (bilinear, as the WebUI's "Latent" hires
        upscaler): img2img takes them as they are and adds the detail the upscale lacks."""
        factor = self.pipe.vae_scale_factor
        return torch.nn.functional.interpolate(self.encode_image(image), size=(size[1] // factor, size[0] // factor),
                                               mode="bilinear")

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """`image`'s latents (the distribution's mode, scaled), in the UNet's dtype. SDXL's VAE
        overflows in fp16: it encodes in fp32, as diffusers' SDXL pipelines do, with only the
        encoder converted (and back)."""
        vae, dtype = self.pipe.vae, self._unet_weight().dtype
        weight = next(vae.encoder.parameters())
        upcast = self.family == "sdxl" and weight.dtype == torch.float16 and vae.config.get("force_upcast", False)
        coder = [m for m in (vae.encoder, getattr(vae, "quant_conv", None)) if m is not None]
        if upcast:  # the encoder only (diffusers upcasts the whole VAE): half the weights converted
            for module in coder:
                module.to(torch.float32)
        try:
            pixels = self.pipe.image_processor.preprocess(image.convert("RGB"))
            pixels = pixels.to(weight.device, torch.float32 if upcast else weight.dtype)
            with torch.no_grad():
                latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        finally:
            if upcast:
                for module in coder:
                    module.to(torch.float16)
        return latents.to(dtype)

    def inpaint(self, request: InpaintRequest) -> Image.Image:
        gen = request.generate
        box = crop_box(request.alpha > 0, request.padding, (gen.width, gen.height))
        if box is None:
            return request.image
        size = (gen.width, gen.height)
        crop = request.image.convert("RGB").crop(box).resize(size, Image.Resampling.LANCZOS)
        region = Image.fromarray(((request.alpha > 0) * 255).astype(np.uint8)).crop(box)
        mask = region.resize(size, Image.Resampling.NEAREST)
        hint = crop_hint(gen.control, box, size, crop, mask)
        extra = self._control_kwargs(gen.control, "control_image", hint)
        if self.pipe.unet.config.in_channels == 4:  # img2img, the original put back outside the mask each step
            init = self.encode_image(crop)
            repaint = torch.from_numpy(np.asarray(mask) > 127)[None, None].to(init.device, init.dtype)
            self._blend = LatentBlend(init, torch.nn.functional.interpolate(repaint, size=init.shape[-2:]), gen.seed)
            try:
                out = self._call(self.pipeline("img2img", gen.control), gen, image=init, strength=request.denoise,
                                 width=gen.width, height=gen.height, **extra)
            finally:
                self._blend = None
        else:  # an in-painting model reads the mask itself
            out = self._call(self.pipeline("inpaint", gen.control), gen, image=crop, mask_image=mask,
                             strength=request.denoise, width=gen.width, height=gen.height, **extra)
        patch = np.asarray(out.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS))
        base = np.asarray(request.image.convert("RGB"))
        patch = matched(base, patch, box, request.mask, request.seam)  # no colour seam
        return Image.fromarray(paste(base, patch, box, request.alpha))

    def hint(self, kind: str, image: Image.Image) -> tuple[Image.Image, bool]:
        return make_hint(kind, image), True

    def segment(self, image: Image.Image, terms: Sequence[str], box: Box | None = None) -> np.ndarray:
        if self.segmenter is None:
            raise ModelNotFoundError("no segmenter was given; pass --segmenter (CLIPSeg folder or hub id) or --mask-image")
        return probabilities_in(self.segmenter, image, terms, box)

    def detect_faces(self, image: Image.Image, box: Box | None = None) -> list[Face]:
        return faces_in(self.face_detector.detect, image, box)

    def body_finder(self) -> Callable[[Image.Image, Box], Face | None] | None:
        return self.bodies.head if self.bodies is not None else None

    def subject_detector(self) -> Callable[[Image.Image, Sequence[str]], list[Box]] | None:
        """The detector's boxes; without its weights (said once in the log), None."""
        return boxes_of(self.detector)

    def refine_masks(self, image: Image.Image, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """SAM's edges; without its weights (said once in the log), the segmenter's."""
        if self.refiner is None:
            return list(masks)
        try:
            return self.refiner.refine(image, masks)
        except ModelNotFoundError:
            return list(masks)

    def interrupted(self) -> bool:
        return self._stop

    def interrupt(self) -> None:
        """Stop at the next step; the runner then keeps what was made so far."""
        self._stop = True

    def enable_fast_path(self, mode: str | None = "reduce-overhead", backend: str = "inductor") -> None:
        """Opt-in speed for CUDA: channels-last UNet and VAE (SDPA attention is diffusers'
        default on torch 2), a compiled UNet (`reduce-overhead`: CUDA graphs, 2.5 ms of CPU a
        step instead of 60 on an H200) and compiled VAE coders. The first pass of each size
        compiles (two minutes there); later ones reuse it. LoRA scales become tensors changed
        in place (`LoraSwitch.make_static`), so switching LoRAs between passes does not
        compile again. `backend`: inductor, or (tests) dynamo's "eager"."""
        unet, vae = self.pipe.unet, self.pipe.vae
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
        compiled = torch.compile(unet._call_impl, mode=mode, backend=backend, fullgraph=False, dynamic=False)
        if mode == "reduce-overhead":  # a CUDA graph's output is overwritten by its next replay
            unet._compiled_call_impl = lambda *args, **kwargs: _own(compiled(*args, **kwargs))
        else:
            unet._compiled_call_impl = compiled
        for coder in (vae.encoder, vae.decoder):
            coder.compile(backend=backend, dynamic=False)
        self.loras.make_static()

    # -- internals --------------------------------------------------------------------------

    @property
    def inpaint_pipe(self) -> Any:
        return self.pipeline("inpaint", None)

    def pipeline(self, mode: str, control: ControlInput | None):
        """The pipeline for `mode` (with the unit's ControlNet), made once on the same modules."""
        key = (mode, control is not None, control.model if control else None)
        if key not in self._pipes:
            extra = {"controlnet": self.controlnet(control.model)} if control else {}
            made = PIPELINES[self.family][(mode, control is not None)].from_pipe(self.pipe, **extra)
            made.set_progress_bar_config(disable=True)
            self._pipes[key] = made
        return self._pipes[key]

    def controlnet(self, source: str | None) -> ControlNetModel:
        """ControlNet weights from a file, a diffusers folder or a hub id, loaded once."""
        if not source:
            raise ModelNotFoundError("ControlNet needs its weights: give controlnet_model (file, folder or hub id)")
        if source not in self._controlnets:
            path, dtype = Path(source), self.pipe.unet.dtype
            try:
                if path.is_file():
                    model = ControlNetModel.from_single_file(str(path), dtype=dtype)
                elif path.is_dir() or HUB_ID.fullmatch(source):
                    model = ControlNetModel.from_pretrained(source, dtype=dtype)
                else:
                    raise OSError("no such file, folder or hub id")
            except OSError as err:
                raise ModelNotFoundError(f"cannot load ControlNet {source!r}: {err}") from None
            theirs, ours = model.config.cross_attention_dim, self.pipe.unet.config.cross_attention_dim
            if theirs != ours:
                raise ModelNotFoundError(f"ControlNet {source!r} is made for another model type (text width {theirs}, "
                                         f"this {self.family.upper()} model's {ours}): give a ControlNet for this model")
            self._controlnets[source] = model.to(self.pipe.device)
        return self._controlnets[source]

    @staticmethod
    def _control_kwargs(control: ControlInput | None, image_key: str, hint: Any) -> dict[str, Any]:
        if control is None:
            return {}
        return {image_key: hint, "controlnet_conditioning_scale": control.scale,
                "control_guidance_start": control.start, "control_guidance_end": control.end}

    def use_loras(self, loras: Sequence[LoraTag]) -> None:
        """Activate exactly `loras` (loading new files once); none: all adapters off."""
        weights: dict[str, float] = {}
        for lora in loras:
            weights[lora.name] = weights.get(lora.name, 0.0) + lora.weight
        self._load(find_loras(self.lora_dir, list(weights)))
        if self.adapters:
            self.loras.apply({self.adapters[name]: weight for name, weight in weights.items()})

    def _load(self, files: Mapping[str, Path]) -> None:
        """LoRA files not loaded yet, loaded once (their layers then found anew)."""
        new = {name: path for name, path in files.items() if name not in self.adapters}
        for name, path in new.items():
            adapter = _adapter_name(name)
            load_lora_file(self.pipe, path, adapter)
            self.adapters[name] = adapter
        if new:
            encoders = [m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None]
            self.loras.find_layers(self.pipe.unet, *encoders)

    def _call(self, pipeline, request: GenerateRequest, **kwargs: Any) -> Image.Image:
        sampler = canonical_sampler(request.sampler)
        self.use_loras(request.loras)
        pipeline.scheduler = make_scheduler(sampler, self._scheduler_config)
        if sampler.startswith("dpm++sde"):
            pipeline.scheduler.noise_sampler_seed = request.seed  # else DPM++ SDE is not reproducible
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        if self.weighted_prompts:  # (word:1.2) and long prompts as the WebUI reads them
            kwargs.update(self.encode_prompts(request.prompt, request.negative))
        else:
            kwargs.update(prompt=request.prompt, negative_prompt=request.negative or None)
        result = pipeline(
            num_inference_steps=at_least_one_step(request.steps, kwargs.get("strength")),
            guidance_scale=request.cfg_scale, generator=generator,
            callback_on_step_end=self._on_step, output_type="pil", **kwargs,
        )
        if self._stop:
            raise PassInterrupted(partial=result.images[0])  # a half-denoised image is never used
        return result.images[0]

    def encode_prompts(self, prompt: str, negative: str) -> dict[str, Any]:
        """Both prompts' embeddings as pipeline arguments, weighted and in as many CLIP windows
        as they need (the shorter one padded with windows of the empty prompt, as the WebUI
        does). SDXL: both text encoders' penultimate layers side by side, the pooled output of
        the second's first window, and an empty negative all zeros (as the WebUI and diffusers)."""
        positive, pooled = self._encode(prompt)
        negative_embeds, negative_pooled = self._encode(negative)
        if positive.shape[1] != negative_embeds.shape[1]:
            empty = self._encode("")[0]
            missing = abs(positive.shape[1] - negative_embeds.shape[1]) // empty.shape[1]
            if positive.shape[1] < negative_embeds.shape[1]:
                positive = torch.cat([positive, *[empty] * missing], dim=1)
            else:
                negative_embeds = torch.cat([negative_embeds, *[empty] * missing], dim=1)
        out = {"prompt_embeds": positive, "negative_prompt_embeds": negative_embeds}
        if self.family == "sdxl":
            if not negative:
                negative_embeds, negative_pooled = torch.zeros_like(negative_embeds), torch.zeros_like(negative_pooled)
            out.update(negative_prompt_embeds=negative_embeds, pooled_prompt_embeds=pooled,
                       negative_pooled_prompt_embeds=negative_pooled)
        return out

    def _encode(self, text: str) -> tuple[Any, Any]:
        """(embeddings of every window, the pooled output of the first; None for SD 1.x/2.x)."""
        pipe = self.pipe
        if self.family == "sd":
            return self._encode_with(text, pipe.tokenizer, pipe.text_encoder, penultimate=False)[0], None
        first = self._encode_with(text, pipe.tokenizer, pipe.text_encoder, penultimate=True)[0]
        second, pooled = self._encode_with(text, pipe.tokenizer_2, pipe.text_encoder_2, penultimate=True)
        return torch.cat([first, second], dim=-1), pooled

    def _encode_with(self, text: str, tokenizer: Any, encoder: Any, penultimate: bool) -> tuple[Any, Any]:
        """(every window's hidden states, the first window's pooled output) of one encoder."""
        ids, weights = weighted_tokens(text, lambda piece: tokenizer(piece, add_special_tokens=False).input_ids)
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        parts: list[Any] = []
        pooled: Any = None
        for window_ids, window_weights in windows(ids, weights, comma if comma != tokenizer.unk_token_id else None):
            fill = WINDOW - len(window_ids)
            row = [tokenizer.bos_token_id, *window_ids, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * fill
            with torch.no_grad():
                output = encoder(torch.tensor([row], device=encoder.device), output_hidden_states=penultimate)
            hidden = output.hidden_states[-2] if penultimate else output[0]
            if pooled is None:
                pooled = output[0]  # SDXL's second encoder: its projected pooled output
            parts.append(emphasize(hidden, [1.0, *window_weights, 1.0] + [1.0] * fill))
        dtype = self._unet_weight().dtype
        return torch.cat(parts, dim=1).to(dtype), pooled.to(dtype)

    def _unet_weight(self) -> torch.Tensor:
        """The UNet's first weight: its dtype and device at no cost (diffusers' `.dtype` and
        `.device` walk every module, a few ms each on an SD-size UNet, several times a job)."""
        return next(self.pipe.unet.parameters())

    def _on_step(self, pipeline, step: int, timestep: Any, tensors: dict) -> dict:
        if self._stop:
            pipeline._interrupt = True
        if self._blend is not None:
            tensors["latents"] = self._blend(pipeline, step, tensors["latents"])
        return tensors

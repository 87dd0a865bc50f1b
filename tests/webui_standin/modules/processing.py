"""modules/processing.py: the processing objects, process_images' hook order and create_infotext.

Sampling is a recorder: each image is a flat colour from crc32(prompt) and the seed; an
img2img with a mask and `inpaint_full_res` changes only the (blurred) masked pixels, as the
WebUI's paste-back does. Every sampling call is appended to `calls`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from modules import extra_networks, images, paths, scripts, shared
from modules.shared import state

calls: list[dict] = []
PROGRESS: list[tuple] = []  # (kind, job_no, job_count, step, steps) at every sampling step
ON_STEP: list = []  # [fn(p, step)]: called at every sampling step (tests interrupt with it)
UNET_HOOK: list = []  # what a ControlNet hook on the shared UNet applies now (sd-webui-controlnet stand-in)


def colour(prompt: str, seed: int) -> tuple[int, int, int]:
    h = zlib.crc32(f"{prompt}|{seed}".encode())
    return (h & 255, (h >> 8) & 255, (h >> 16) & 255)


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: str = ""
    prompt_for_display: str = None
    negative_prompt: str = ""
    styles: list = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = None
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool = None
    tiling: bool = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = None
    overlay_images: list = None
    eta: float = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float = None
    override_settings: dict = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int = None
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    token_merging_ratio = 0
    token_merging_ratio_hr = 0
    disable_extra_networks: bool = False
    firstpass_image: Any = None

    scripts_value: Any = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)

    cached_uc = [None, None]  # class-level, shared by every processing object, as in the WebUI
    cached_c = [None, None]

    def __post_init__(self):
        self.styles = self.styles or []
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.comments = {}
        self.is_api = False
        self.iteration = 0

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value

    def comment(self, text):
        self.comments[text] = 1

    def init(self):
        """txt2img with hires fix doubles the job count once per job (processing_has_refined_job_count)."""
        if getattr(self, "enable_hr", False) and not state.processing_has_refined_job_count:
            if state.job_count == -1:
                state.job_count = self.n_iter
            state.job_count *= 2
            state.processing_has_refined_job_count = True

    def setup_prompts(self):
        prompts = self.prompt if isinstance(self.prompt, list) else self.batch_size * self.n_iter * [self.prompt]
        negatives = (self.negative_prompt if isinstance(self.negative_prompt, list)
                     else self.batch_size * self.n_iter * [self.negative_prompt])
        self.main_prompt, self.main_negative_prompt = prompts[0], negatives[0]
        self.all_prompts = [apply_styles(x, self.styles) for x in prompts]
        self.all_negative_prompts = [apply_styles(x, self.styles, negative=True) for x in negatives]

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def setup_conds(self):
        """get_conds_with_caching: the (class-level, shared) cache lists are written in place."""
        for cache, prompts in ((self.cached_uc, self.negative_prompts), (self.cached_c, self.prompts)):
            key = (tuple(prompts), self.steps)
            if cache[0] != key:
                cache[0], cache[1] = key, f"cond of {prompts}"

    def sample_images(self) -> list[Image.Image]:
        forge = hasattr(self.sd_model, "forge_objects_original")
        if forge:  # Forge: every sampling starts from the LoRA-applied set, then the scripts' hooks
            self.sd_model.forge_objects = self.sd_model.forge_objects_after_applying_lora.shallow_copy()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self)
        outs = []
        state.sampling_steps = self.steps
        for step in range(self.steps):  # the sampler's callback; a test may interrupt at any step
            state.sampling_step = step
            PROGRESS.append((type(self).__name__, state.job_no, state.job_count, step, self.steps))
            if ON_STEP:
                ON_STEP[0](self, step)
            if state.interrupted or state.skipped:
                break
        for i, (prompt, seed) in enumerate(zip(self.prompts, self.seeds)):
            call = {"kind": type(self).__name__, "prompt": prompt, "negative": self.negative_prompts[i], "seed": seed,
                    "loras": extra_networks.activations[-1] if extra_networks.activations else [],
                    "steps": self.steps, "cfg_scale": self.cfg_scale, "sampler": self.sampler_name,
                    "size": (self.width, self.height), "p": self, "controlnet": list(UNET_HOOK)}
            if forge:
                call["forge"] = (self.sd_model.forge_objects.loras, list(self.sd_model.forge_objects.controls))
            calls.append(call)
            outs.append(self.paint(i, prompt, seed, call))
        return outs

    def paint(self, i, prompt, seed, call):
        rgb = colour(prompt, seed)
        if state.interrupted or state.skipped:  # the WebUI decodes the unfinished latents
            rgb = tuple(c // 2 for c in rgb)
        return Image.new("RGB", (self.width, self.height), rgb)


def apply_styles(prompt, styles, negative=False):
    """shared.prompt_styles.apply_styles_to_prompt: each style text is appended with ", "."""
    for style in styles:
        text = STYLES.get(style, ("", ""))[1 if negative else 0]
        prompt = text.replace("{prompt}", prompt) if "{prompt}" in text else ", ".join(x for x in (prompt, text) if x)
    return prompt


STYLES: dict[str, tuple[str, str]] = {}  # name -> (prompt, negative prompt); tests add styles


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    hr_scale: float = 2.0
    hr_upscaler: str = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = None
    hr_sampler_name: str = None
    hr_scheduler: str = None
    hr_prompt: str = ''
    hr_negative_prompt: str = ''

    def setup_prompts(self):
        super().setup_prompts()
        if not self.enable_hr:
            return
        self.hr_prompt = self.hr_prompt or self.prompt
        self.hr_negative_prompt = self.hr_negative_prompt or self.negative_prompt
        self.all_hr_prompts = [apply_styles(self.hr_prompt, self.styles)] * (self.batch_size * self.n_iter)
        self.all_hr_negative_prompts = [apply_styles(self.hr_negative_prompt, self.styles, True)] * (
            self.batch_size * self.n_iter)

        def get_hr_prompt(p, index, prompt_text, **kwargs):
            hr_prompt = p.all_hr_prompts[index]
            return hr_prompt if hr_prompt != prompt_text else None

        self.extra_generation_params["Hires prompt"] = get_hr_prompt

    def parse_extra_network_prompts(self):
        super().parse_extra_network_prompts()
        if self.enable_hr:
            n, b = self.iteration, self.batch_size
            self.hr_prompts = self.all_hr_prompts[n * b:(n + 1) * b]
            self.hr_prompts, _ = extra_networks.parse_prompts(self.hr_prompts)


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = None
    latent_mask: Image = None
    force_task_id: str = None

    def __post_init__(self):
        super().__post_init__()
        self.image_mask, self.mask = self.mask, None
        if isinstance(self.mask_blur, int):
            self.mask_blur_x = self.mask_blur_y = self.mask_blur

    def paint(self, i, prompt, seed, call):
        """1.10.1's img2img: binary mask -> separable Gaussian blur (kernel 2*int(2.5*blur+0.5)+1)
        -> "only masked" crop of the blurred mask's box + padding, widened to the pass aspect ->
        sample the crop at (width, height) -> with `overlay_inpaint` (default on): uncrop and
        composite the original over the unmasked part by the *blurred* mask; off: the raw crop.

        The "sampler" paints the prompt's colour where the latent mask is set; elsewhere the
        crop comes back through a lossy "VAE round trip" (+1), and the encode draws from
        torch's global generator, as the real VAE's sampling does."""
        init = self.init_images[0].convert("RGB")
        if self.image_mask is None:  # plain img2img: the init resized to the pass size, `denoise` of it redone
            call.update(init=init, denoise=self.denoising_strength)
            resized = init.resize((self.width, self.height), Image.Resampling.LANCZOS)
            return Image.blend(resized, Image.new("RGB", resized.size, colour(prompt, seed)), self.denoising_strength)
        mask = binary_mask(self.image_mask)
        call.update(mask=np.asarray(mask) > 127, init=init, denoise=self.denoising_strength, blur=self.mask_blur_x,
                    padding=self.inpaint_full_res_padding, fill=self.inpainting_fill, full_res=self.inpaint_full_res)
        blurred = gaussian_mask(mask, self.mask_blur_x, self.mask_blur_y)
        box = crop_region(blurred, self.inpaint_full_res_padding, self.width, self.height)
        crop = init.crop(box).resize((self.width, self.height), Image.Resampling.LANCZOS)
        latent_mask = np.asarray(blurred.crop(box).resize((self.width, self.height), Image.Resampling.LANCZOS)) > 127
        noise = int(torch.randint(0, 40, (1,)).item())  # the VAE encode's draw from the global generator
        painted = np.asarray(crop).astype(np.int16) + 1
        painted[latent_mask] = np.array(colour(prompt, seed)) + noise
        if state.interrupted or state.skipped:  # cut short: the crop is half-made
            painted[latent_mask] //= 2
        out = Image.fromarray(np.clip(painted, 0, 255).astype(np.uint8))
        self.paste_to = (box[0], box[1], box[2] - box[0], box[3] - box[1])
        call.update(box=box, noise=noise)
        if not shared.opts.data.get("overlay_inpaint", True):
            return out
        full = init.copy()
        full.paste(out.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2])
        return Image.composite(full, init, blurred)


def binary_mask(image):
    """processing.create_binary_mask: the alpha channel of a transparent RGBA mask, else grey."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        return image.split()[-1].convert("L").point(lambda x: 255 if x > 128 else 0)
    return image.convert("L")


def gaussian_mask(mask, blur_x, blur_y):
    """img2img's mask blur: cv2.GaussianBlur along x, then along y."""
    import cv2

    array = np.asarray(mask)
    if blur_x > 0:
        array = cv2.GaussianBlur(array, (2 * int(2.5 * blur_x + 0.5) + 1, 1), blur_x)
    if blur_y > 0:
        array = cv2.GaussianBlur(array, (1, 2 * int(2.5 * blur_y + 0.5) + 1), blur_y)
    return Image.fromarray(array)


def crop_region(mask, padding, width, height):
    """masking.get_crop_region_v2 + expand_crop_region: the box, padded, grown to width:height."""
    x1, y1, x2, y2 = mask.getbbox()
    if padding:
        x1, y1, x2, y2 = max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(
            y2 + padding, mask.height)
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / (width / height) - (y2 - y1)), mask.height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * (width / height) - (x2 - x1)), mask.width)
    return x1, y1, x2, y2


def _grow(lo, hi, diff, limit):
    lo, hi = lo - diff // 2, hi + diff - diff // 2
    if hi >= limit:
        lo, hi = lo - (hi - limit), limit
    if lo < 0:
        lo, hi = 0, hi - lo
    return lo, min(hi, limit)


class Processed:
    def __init__(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None, all_negative_prompts=None,
                 all_seeds=None, all_subseeds=None, index_of_first_image=0, infotexts=None, comments=""):
        self.images = images_list
        self.prompt = p.prompt
        self.seed = seed
        self.info = info
        self.infotexts = infotexts or [info] * len(images_list)
        self.all_prompts = all_prompts or getattr(p, "all_prompts", [p.prompt])
        self.all_seeds = all_seeds or getattr(p, "all_seeds", [seed])
        self.extra_generation_params = p.extra_generation_params
        self.comments = "".join(f"{c}\n" for c in p.comments)


def quote(text):
    text = str(text)
    if ',' not in text and '\n' not in text and ':' not in text:
        return text
    import json

    return json.dumps(text, ensure_ascii=False)


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0,
                    use_main_prompt=False, index=None, all_negative_prompts=None):
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    prompt_text = all_prompts[index]
    negative_prompt = (all_negative_prompts or p.all_negative_prompts)[index]
    generation_params = {
        "Steps": p.steps, "Sampler": p.sampler_name, "CFG scale": p.cfg_scale, "Seed": all_seeds[index],
        "Face restoration": "CodeFormer" if p.restore_faces else None, "Size": f"{p.width}x{p.height}",
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        **p.extra_generation_params,
    }
    for key, value in generation_params.items():
        if isinstance(value, list):
            generation_params[key] = value[index]
        elif callable(value):
            generation_params[key] = value(**locals())
    text = ", ".join(f"{k}: {quote(v)}" for k, v in generation_params.items() if v is not None)
    negative_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt_text}{negative_text}\n{text}".strip()


def fix_seed(p):
    p.seed = 1000 if p.seed == -1 else p.seed


def process_images(p) -> Processed:
    """override_settings applied for the job and put back afterwards; unknown samplers silently
    replaced by the first one (sd_samplers.fix_p_invalid_sampler_and_scheduler)."""
    from modules import sd_samplers

    if p.scripts is not None:
        p.scripts.before_process(p)
    stored = {k: shared.opts.data[k] for k in p.override_settings if k in shared.opts.data}
    try:
        for key, value in p.override_settings.items():
            shared.opts.data[key] = value
        sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
        return process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            shared.opts.data.update(stored)


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)


def process_images_inner(p) -> Processed:
    """The order of processing.process_images_inner in 1.10.1, minus the model."""
    if isinstance(p.prompt, list):
        assert len(p.prompt) > 0
    p.setup_prompts()
    seed = 1000 if p.seed == -1 else p.seed
    p.all_seeds = [int(seed) + x for x in range(len(p.all_prompts))]
    p.all_subseeds = [-1] * len(p.all_prompts)
    if hasattr(p.sd_model, "forge_objects_original"):  # Forge keeps infotext parts on the model
        p.sd_model.comments, p.sd_model.extra_generation_params = [], {"Forge job": p.prompt[:12]}
    if p.scripts is not None:
        p.scripts.process(p)
    infotexts, output_images = [], []
    p.init()
    if state.job_count == -1:
        state.job_count = p.n_iter
    for n in range(p.n_iter):
        p.iteration = n
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        b = p.batch_size
        p.prompts = p.all_prompts[n * b:(n + 1) * b]
        p.negative_prompts = p.all_negative_prompts[n * b:(n + 1) * b]
        p.seeds = p.all_seeds[n * b:(n + 1) * b]
        p.subseeds = p.all_subseeds[n * b:(n + 1) * b]
        if p.scripts is not None:
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        if len(p.prompts) == 0:
            break
        if hasattr(p.sd_model, "forge_objects_original"):  # Forge resets the patcher set per batch
            p.sd_model.forge_objects = p.sd_model.forge_objects_original.shallow_copy()
        p.parse_extra_network_prompts()
        if not p.disable_extra_networks:
            extra_networks.activate(p, p.extra_network_data)
        if hasattr(p.sd_model, "forge_objects_original"):
            p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
            p.extra_generation_params.update(p.sd_model.extra_generation_params)
        if p.scripts is not None:
            p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        p.setup_conds()
        if n == 0 and not shared.cmd_opts.no_prompt_history:
            with open(os.path.join(paths.data_path, "params.txt"), "w", encoding="utf8") as file:
                file.write(create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=0))
        x_samples = torch.stack([to_tensor(im) for im in p.sample_images()])
        state.nextjob()
        if p.scripts is not None:
            p.scripts.postprocess_batch(p, x_samples, batch_number=n)
            p.prompts = p.all_prompts[n * b:(n + 1) * b]
            p.negative_prompts = p.all_negative_prompts[n * b:(n + 1) * b]
            batch_params = scripts.PostprocessBatchListArgs(list(x_samples))
            p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
            x_samples = batch_params.images
        for i, x_sample in enumerate(x_samples):
            p.batch_index = i
            array = (255.0 * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
            if p.restore_faces:
                FACE_RESTORATION_SAW.append(array.copy())
            image = Image.fromarray(array)
            if p.scripts is not None:
                pp = scripts.PostprocessImageArgs(image)
                p.scripts.postprocess_image(p, pp)
                image = pp.image
                pp = scripts.PostprocessImageArgs(image)  # 1.10.1: after color correction and the overlay
                p.scripts.postprocess_image_after_composite(p, pp)
                image = pp.image
            text = create_infotext(p, p.prompts, p.seeds, p.subseeds, index=i, all_negative_prompts=p.negative_prompts)
            if not p.do_not_save_samples:
                images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i], "png", info=text, p=p)
            infotexts.append(text)
            output_images.append(image)
    res = Processed(p, output_images, p.all_seeds[0], infotexts[0] if infotexts else "", infotexts=infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res


FACE_RESTORATION_SAW: list[np.ndarray] = []

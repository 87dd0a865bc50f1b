"""One WebUI job between its script hooks (DESIGN.md §3, §7).

process: validate the options and every prompt, plan each image (nothing runs from a
malformed job) -> before_process_batch: the batch's prompts become base-pass prompts, in
place -> postprocess_batch_list: per image, the person passes on the decoded base image,
before the WebUI's face restoration -> postprocess: intermediates added to the result.
Never raises into the WebUI: problems become infotext warnings and the base is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .. import __version__
from ..engines.base import Engine
from ..errors import MultipassError
from ..finish import finish_image, wanted
from ..masks.masking import gray_image
from ..options import MultipassOptions
from ..plan import Generation, Plan, make_plan
from ..prompt import with_tags
from ..runner import run
from .prompts import parse_styled

log = logging.getLogger(__name__)

SaveImage = Callable[[Image.Image, Any, int, str], None]  # (image, p, index in job, suffix)
WARNINGS_KEY = "Multipass warnings"
ERROR_KEY = "Multipass error"
INTERRUPTED_KEY = "Multipass interrupted"  # the pass that was stopped midway (and discarded)


class Progress(Protocol):
    """The WebUI's progress bar for the whole job (webui/engine.JobProgress)."""

    reserved: int

    def reserve(self, passes: int) -> None: ...

    def release(self, passes: int) -> None: ...


def _nth(value: Any, index: int) -> Any:
    return value[index] if isinstance(value, list) else value


def to_image(tensor) -> Image.Image:
    """A decoded CHW 0..1 tensor as the WebUI turns it into an image (truncating)."""
    return Image.fromarray((255.0 * np.moveaxis(tensor.cpu().numpy(), 0, 2)).astype(np.uint8))


def merge(tensor, before: Image.Image, after: Image.Image):
    """`tensor` with only the pixels that the passes changed replaced: the rest stays bit-exact.
    An upscaled result (the harmonizing pass's hires fix) replaces it whole."""
    import torch

    new = torch.from_numpy(np.asarray(after.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)
    if after.size != before.size:
        return new.to(tensor.device, tensor.dtype)
    changed = torch.from_numpy(np.any(np.asarray(before) != np.asarray(after), axis=2))
    out = tensor.clone()
    out[:, changed] = new[:, changed].to(out.device, out.dtype)
    return out


@dataclass
class MultipassJob:
    options: MultipassOptions
    engine: Engine
    save_image: SaveImage | None = None
    progress: Progress | None = None
    plans: dict[int, Plan] = field(default_factory=dict)
    warnings: dict[int, list[str]] = field(default_factory=dict)
    interrupted: dict[int, str] = field(default_factory=dict)
    extra_images: list[tuple[Image.Image, str]] = field(default_factory=list)
    _hires: dict[int, tuple[str, str]] = field(default_factory=dict)

    # -- process -------------------------------------------------------------------------------

    def start(self, p) -> bool:
        """Plan every image of the job; on a malformed prompt generate nothing and say why."""
        params = p.extra_generation_params = {k: v for k, v in p.extra_generation_params.items()
                                              if not k.startswith("Multipass")}  # XYZ cells share the dict
        try:
            for index, prompt in enumerate(p.all_prompts):
                job = parse_styled(prompt, p.all_negative_prompts[index], _nth(p.prompt, index),
                                   _nth(p.negative_prompt, index))
                generation = Generation(int(p.all_seeds[index]) % 2**32, p.steps, float(p.cfg_scale), p.width,
                                        p.height, p.sampler_name or "Euler a")
                self.plans[index] = make_plan(job, self.options, generation)
        except MultipassError as err:
            reject(p, f"prompt {index + 1}: {err}")
            return False
        if any(plan.options.face_correct for plan in self.plans.values()):
            p.restore_faces = True  # the WebUI's own restorer, after the passes (postprocess_batch_list)
        params["Multipass"] = __version__
        params.update(self.plans[0].options.infotext_params() if self.plans else self.options.infotext_params())
        params[WARNINGS_KEY] = self._warning_text
        params[INTERRUPTED_KEY] = self._interrupted_text
        for what in ("segmenter", "subject detector", "face detector", "mask edges"):
            params[f"Multipass {what}"] = self._used(what)
        return True

    def _used(self, what: str) -> Callable[..., str | None]:
        """Which model did the work (known once it ran), for that image's infotext."""
        return lambda p, index, **_: getattr(self.engine, "used", {}).get(what)

    def _warning_text(self, p, index, **_: Any) -> str | None:
        found = self.warnings.get(p.iteration * p.batch_size + index)
        return "; ".join(found) if found else None

    def _interrupted_text(self, p, index, **_: Any) -> str | None:
        return self.interrupted.get(p.iteration * p.batch_size + index)

    def warn(self, index: int, message: str) -> None:
        log.warning("multipass: image %d: %s", index + 1, message)
        self.warnings.setdefault(index, []).append(message)

    # -- before_process_batch --------------------------------------------------------------------

    def rewrite_batch(self, p, batch_number: int, prompts: list[str]) -> None:
        """The batch's prompts (the very list the WebUI conditions on) become base-pass prompts."""
        if batch_number == 0 and self.progress is not None:  # the WebUI has set its job count by now
            self.progress.reserve(sum(len(plan.persons) for plan in self.plans.values()))
        for i in range(len(prompts)):
            plan = self.plans.get(batch_number * p.batch_size + i)
            if plan is None:
                continue
            prompts[i] = with_tags(plan.base.prompt, plan.base.loras)
            p.negative_prompts[i] = plan.base.negative
            self._rewrite_hires(p, batch_number * p.batch_size + i, plan)

    def _rewrite_hires(self, p, index: int, plan: Plan) -> None:
        if not getattr(p, "enable_hr", False) or getattr(p, "all_hr_prompts", None) is None:
            return
        self._hires[index] = (p.all_hr_prompts[index], p.all_hr_negative_prompts[index])
        try:
            hires = parse_styled(p.all_hr_prompts[index], p.all_hr_negative_prompts[index],
                                 _nth(p.hr_prompt, index), _nth(p.hr_negative_prompt, index))
            base = make_plan(hires, self.options, plan.generation).base
        except MultipassError as err:
            self.warn(index, f"hires prompt: {err}; the main base prompt is used")
            base = plan.base
        p.all_hr_prompts[index] = with_tags(base.prompt, base.loras)
        p.all_hr_negative_prompts[index] = base.negative

    # -- postprocess_batch_list -------------------------------------------------------------------

    def run_batch(self, p, images: list, batch_number: int) -> None:
        """Person passes on each decoded image of the batch, replacing it in place."""
        for index, (hr_prompt, hr_negative) in self._hires.items():  # no spurious "Hires prompt"
            p.all_hr_prompts[index], p.all_hr_negative_prompts[index] = hr_prompt, hr_negative
        self._hires.clear()
        stopped = "base" if self.engine.interrupted() else None  # the WebUI's sampling was cut short
        for i, tensor in enumerate(images):
            index = batch_number * p.batch_size + i
            plan = self.plans.get(index)
            if plan is None or len(plan.passes) == 1:
                continue
            if stopped or self.engine.interrupted():
                self._skip_image(index, stopped)
                continue
            base = to_image(tensor)
            final, stopped = self._run_image(p, index, plan, base)
            if final is not None:
                images[i] = merge(tensor, base, final)

    def _skip_image(self, index: int, stopped: str | None) -> None:
        if stopped == "base":
            self.interrupted[index] = "base"
            self.warn(index, "interrupted during the base pass: this is the WebUI's unfinished image; "
                             "no person pass ran")
        else:
            self.warn(index, "interrupted: no person pass ran; the base image is kept")

    def _run_image(self, p, index: int, plan: Plan, base: Image.Image) -> tuple[Image.Image | None, str | None]:
        """(the final image or None to keep the base, the pass that was interrupted)."""
        floor = self.progress.reserved - len(plan.persons) if self.progress is not None else 0
        try:
            result = run(plan, self.engine, base=base, finishing=False)  # graded after the WebUI's steps
        except MultipassError as err:
            self.warn(index, f"{err}; the base image is kept")
            return None, None
        except Exception as err:  # noqa: BLE001 - never raise into the WebUI; the base image stays
            log.exception("multipass: image %d failed", index + 1)
            self.warn(index, f"{err.__class__.__name__}: {err}; the base image is kept")
            return None, None
        finally:
            if self.progress is not None:  # passes counted but not run
                self.progress.release(self.progress.reserved - max(floor, 0))
        for message in result.warnings:
            self.warn(index, message)
        if result.interrupted_pass:
            self.interrupted[index] = result.interrupted_pass
        if self.options.save_passes:
            self._keep_passes(p, index, result)
        return result.final, result.interrupted_pass

    def _keep_passes(self, p, index: int, result) -> None:
        images = dict(result.images)
        for name, alpha in result.alphas.items():
            images[f"{name}-mask"] = gray_image(alpha)
        for name, image in images.items():
            if name == list(result.images)[-1]:
                continue  # the final image is the job's own output
            self.extra_images.append((image, f"multipass {name}, image {index + 1}"))
            if self.save_image is not None:
                self.save_image(image, p, index, f"-multipass-{name}")

    def finish_image(self, p, pp) -> None:
        """Grading and grain on the image as the WebUI will save it: after its face restoration,
        colour correction and in-paint overlay (`postprocess_image_after_composite`)."""
        index = p.iteration * p.batch_size + p.batch_index
        plan = self.plans.get(index)
        if plan is None or not wanted(plan.options) or index in self.interrupted:
            return
        try:
            pp.image = finish_image(pp.image, plan.options, p.seeds[p.batch_index], self.engine)
        except MultipassError as err:
            self.warn(index, f"{err}; the image is not finished")

    # -- postprocess ------------------------------------------------------------------------------

    def finish(self, processed) -> None:
        """Intermediate passes join the result (the API returns them; the UI shows them). Our
        per-image infotext values were functions of the image; every infotext is written now,
        and what remains is the job's JSON, which 1.10 writes with such values as null and
        Forge Classic (1.7's `Processed.js`) cannot write at all: null them here."""
        if self.progress is not None:
            self.progress.release(self.progress.reserved)
        for image, label in self.extra_images:
            processed.images.append(image)
            processed.infotexts.append(label)
        params = processed.extra_generation_params
        for key, value in list(params.items()):
            if key.startswith("Multipass") and callable(value):
                params[key] = None


def reject(p, message: str) -> None:
    """Generate nothing for a malformed job, and say why where the user looks."""
    log.error("multipass: %s", message)
    p.extra_generation_params[ERROR_KEY] = message
    p.comment(f"Multipass: {message}")
    p.n_iter = 0

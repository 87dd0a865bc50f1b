"""Face stage time per face at 512x512 relative to one diffusion step (not a test).

Real detector and face mesh (mediapipe) on scikit-image's astronaut; the face in-paint on a
random-weight UNet of SD 1.x width at the pass size. Face swap needs insightface's real
model files, which cannot be downloaded here: give `--swap-model` and `--recognition-model`
to time it too.

    .venv/bin/python bench/bench_faces.py [--pass-size 512] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402
from timing import best  # noqa: E402

from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline  # noqa: E402
from lib_multipass.face_passes import face_request  # noqa: E402
from lib_multipass.faces.detect import MediaPipeFaceDetector, face_mask  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import Generation, make_plan  # noqa: E402
from lib_multipass.prompt import parse  # noqa: E402
from lib_multipass.tiny_models import build_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pass-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--swap-model")
    parser.add_argument("--recognition-model")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    image = Image.fromarray(data.astronaut())
    detector = MediaPipeFaceDetector()
    face = detector.detect(image)[0]
    detect = best(lambda: detector.detect(image))
    mesh = best(lambda: face_mask(image, face))
    with tempfile.TemporaryDirectory() as tmp:
        build_pipeline(Path(tmp) / "sd", unet_channels=(320, 640, 1280, 1280))
        engine = DiffusersEngine(load_pipeline(str(Path(tmp) / "sd"), device="cpu"))
        size = args.pass_size
        options = MultipassOptions.from_dict({"inpaint_faces": True})
        plan = make_plan(parse("portrait of a woman"), options,
                         Generation(seed=1, steps=args.steps, width=size, height=size, sampler="euler"))
        p = plan.passes[1]
        request = face_request(p, image, face, 1)
        steps = max(1, int(p.steps * p.faces.denoise))
        # one step = the difference between 3 and 2 steps (text encoding and VAE decode cancel out)
        one_step = best(lambda: engine.txt2img(_request(plan, 3)), 1) - best(lambda: engine.txt2img(_request(plan, 2)), 1)
        inpaint = best(lambda: engine.inpaint(request), repeat=1)
    print(f"torch threads {torch.get_num_threads()}, face {face.size} px, pass {size}x{size}, "
          f"{steps} face steps (denoise {p.faces.denoise})")
    print(f"detect {detect * 1000:.1f} ms, face-mesh mask {mesh * 1000:.1f} ms "
          f"= {(detect + mesh) / one_step:.3f} steps")
    print(f"one txt2img step {one_step:.2f} s; face in-paint {inpaint:.2f} s = {inpaint / one_step:.2f} steps "
          f"(of which {steps} are diffusion steps)")
    if args.swap_model and args.recognition_model:
        from lib_multipass.faces.swap import FaceSwapper

        swapper = FaceSwapper(Path(args.swap_model), Path(args.recognition_model), detector)
        identity = swapper.identity([image])
        swap = best(lambda: swapper.swap(image, face, identity, face_mask(image, face)))
        print(f"face swap {swap * 1000:.0f} ms = {swap / one_step:.3f} steps")


def _request(plan, steps: int):
    from lib_multipass.engines.base import GenerateRequest

    base = plan.base
    return GenerateRequest(base.prompt, base.negative, (), base.seed, steps, base.cfg_scale, base.sampler,
                           base.width, base.height)


if __name__ == "__main__":
    main()

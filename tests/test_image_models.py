"""Upscaler weights through spandrel (a tiny random Real-ESRGAN in RealESRGAN_x4plus.pth's
key layout): detected and loaded, tiled as it is untiled, used by super resolution and the
harmonizing pass's upscale in the standalone engine; bad files named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.errors import ModelNotFoundError
from lib_multipass.image_models import load_image_model, run_tiled, upscale_with
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run
from lib_multipass.tiny_models import write_esrgan


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    path = tmp_path_factory.mktemp("upscalers") / "RealESRGAN_tiny_x4.safetensors"
    write_esrgan(path)
    return path


def photo(size=(140, 100)) -> Image.Image:
    noise = np.random.default_rng(0).random((50, 70, 3)) * 255
    return Image.fromarray(noise.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)


def test_a_real_esrgan_file_is_detected_and_tiles_as_it_runs_whole(esrgan):
    model = load_image_model(str(esrgan))
    assert model.architecture.id == "ESRGAN" and model.scale == 4
    image = photo()
    tiled, whole = run_tiled(model, image, tile=64, overlap=16), run_tiled(model, image, tile=4096)
    assert tiled.size == whole.size == (560, 400)
    difference = np.abs(np.asarray(tiled, int) - np.asarray(whole, int))
    assert difference.max() <= 2 and difference.mean() < 0.01  # the context each tile lacks, at most
    lanczos = image.resize((560, 400), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(whole, int) - np.asarray(lanczos, int)).mean() > 1  # the network did the work
    assert upscale_with(model, image, (280, 200)).size == (280, 200)  # 4x, then down to the asked 2x


def test_files_that_are_not_upscalers_are_named(tmp_path, tiny):
    with pytest.raises(ModelNotFoundError, match="not a weights file"):
        load_image_model(str(tmp_path / "missing.pth"))
    lora = next(tiny.lora_dir.glob("*.safetensors"))
    with pytest.raises(ModelNotFoundError, match="not one of the architectures .*ESRGAN"):
        load_image_model(str(lora))
    (tmp_path / "cut.pth").write_bytes(b"not a pickle")
    with pytest.raises(ModelNotFoundError, match="cannot read"):
        load_image_model(str(tmp_path / "cut.pth"))


def test_super_resolution_with_upscaler_weights_in_the_standalone_engine(engine, esrgan, tmp_path):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (10, 10, 40, 54))
    mask.save(tmp_path / "mask.png")
    options = {"mask_image": str(tmp_path / "mask.png"), "super_resolution": 2}
    plan = make_plan(parse("a forest BREAK ohwx man"),
                     MultipassOptions.from_dict({**options, "super_resolution_upscaler": str(esrgan)}),
                     Generation(seed=3, steps=2, width=64, height=64, sampler="euler"))
    result = run(plan, engine)
    assert result.images["finished"].size == (128, 128)
    model = load_image_model(str(esrgan))
    assert np.array_equal(np.asarray(result.images["finished"]),
                          np.asarray(upscale_with(model, result.images["person_1"], (128, 128))))


def test_the_runner_asks_the_engine_for_the_named_upscaler():
    engine = RecordingEngine({"person": np.ones((64, 64), np.float32)})
    plan = make_plan(parse("a BREAK b"), MultipassOptions.from_dict({"super_resolution": 3,
                                                                     "super_resolution_upscaler": "R-ESRGAN 4x+"}),
                     Generation(width=64, height=64))
    result = run(plan, engine)
    assert ("upscale", (192, 192), "R-ESRGAN 4x+") in engine.requests and result.final.size == (192, 192)


def test_a_known_name_is_downloaded_once_whole_or_not_at_all(esrgan, tmp_path, monkeypatch):
    import io
    import urllib.request

    from lib_multipass.image_models import weights_path

    calls = []

    class Answer(io.BytesIO):
        headers = {"Content-Length": str(esrgan.stat().st_size)}

    def urlopen(url, timeout):
        calls.append(url)
        return Answer(esrgan.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    path = weights_path("RealESRGAN_x4plus", tmp_path / "models")
    assert path == tmp_path / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth" and path.read_bytes() == esrgan.read_bytes()
    assert weights_path("RealESRGAN_x4plus", tmp_path / "models") == path and len(calls) == 1  # once
    assert calls[0].startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/")

    def offline(url, timeout):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ModelNotFoundError, match="cannot download .*GFPGANv1.4.pth .*download it yourself"):
        weights_path("GFPGANv1.4", tmp_path / "models")
    assert not list((tmp_path / "models" / "GFPGAN").iterdir())  # no cut file left behind

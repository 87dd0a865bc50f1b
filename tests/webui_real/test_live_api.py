"""The API as clients use it: bad requests are HTTP 422 naming the field before any pass (no
traceback in the server's log), the extension's routes, inline images, and the webuiapi client."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from webui_client import BASE_PAYLOAD, PROMPT, encode

HOSTILE = [
    ({"mask_dilate": 100000}, {}, "mask_dilate"),
    ({"person_sampler": "Nope"}, {}, "person_sampler"),
    ({"denoising_strength": 1.5}, {}, "denoising_strength"),
    ({"mask_image": "/no/such/mask.png"}, {}, "mask_image"),
    ({"controlnet": "pose", "controlnet_model": "no_such_model"}, {}, None),  # the field depends on the extension
    ({}, {"width": 0}, "width"),
    ({}, {"width": 8}, "width"),
    ({}, {"steps": 0}, "steps"),
    ({}, {"prompt": "a BREAK b BREAK c BREAK d BREAK e BREAK f BREAK g"}, "prompt"),  # 5 persons, 4 allowed
    ({}, {"prompt": "a BREAK b --mask_blur lots"}, "prompt"),
]


@pytest.mark.parametrize("options,payload,field", HOSTILE)
def test_bad_requests_are_422_naming_the_field(sd1, options, payload, field):
    before = sd1.log_text()
    body = {"prompt": PROMPT, **payload}
    job = sd1.txt2img(body.pop("prompt"), options={"enabled": True, **options}, **body)
    assert job.status == 422, job.body
    assert job.body["field"] == field or (field is None and job.body["field"] in ("controlnet", "controlnet_model"))
    new_log = sd1.log_text()[len(before):]
    assert "Traceback" not in new_log and "*** Error" not in new_log


def test_args_that_are_not_a_list_are_422(sd1):
    body = {**BASE_PAYLOAD, "prompt": PROMPT, "alwayson_scripts": {"multipass": {"args": "abc"}}}
    answer = sd1.post("/sdapi/v1/txt2img", body)
    assert answer.status_code == 422 and answer.json()["field"] == "args"


@pytest.mark.parametrize("body,field", [
    ({"persons": "abc"}, "persons"), ({"persons": -1}, "persons"), ({"persons": 99}, "persons"),
    ({"image": encode(Image.new("RGB", (1, 1)))}, "image"), ({"image": "not an image"}, "image"),
])
def test_mask_route_refuses_bad_input(sd1, body, field):
    answer = sd1.post("/multipass/v1/mask", {"image": encode(Image.new("RGB", (64, 64))), **body})
    assert answer.status_code == 422 and answer.json()["field"] == field


def test_mask_route_and_parse_route_answer(sd1):
    answer = sd1.post("/multipass/v1/mask", {"image": encode(Image.new("RGB", (64, 48), (90, 90, 90))),
                                             "options": {"mask_dilate": 0}})
    assert answer.status_code == 200 and "mask" in answer.json()
    parsed = sd1.post("/multipass/v1/parse", {"prompt": PROMPT})
    assert parsed.status_code == 200 and parsed.json()["segments"]["persons"] == ["ohwx man"]
    assert sd1.post("/multipass/v1/parse", {"prompt": ["a", "b"]}).status_code == 422


def test_options_route_is_the_schema_of_the_options_dict(sd1):
    from lib_multipass.options import MultipassOptions, option_specs

    schema = sd1.get("/multipass/v1/options").json()
    assert list(schema["properties"]) == list(option_specs())
    defaults = {name: item["default"] for name, item in schema["properties"].items()}
    assert MultipassOptions.from_dict(defaults) == MultipassOptions()


def test_inline_mask_image_is_used_and_not_written_out(sd1):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 56))
    job = sd1.txt2img(options={"enabled": True, "save_passes": True, "mask_image": encode(mask), "mask_dilate": 0,
                               "mask_blur": 0})
    saved = job.named("multipass person_1-mask, image 1")[..., 0]
    assert saved[30, 20] == 255 and saved[30, 50] == 0
    assert "base64" not in job.infotexts[0] and "iVBOR" not in job.infotexts[0]
    assert job.params()["Multipass mask image"].startswith("inline image")


def test_webuiapi_client_runs_a_multipass_job(sd1):
    webuiapi = pytest.importorskip("webuiapi")
    api = webuiapi.WebUIApi(host="127.0.0.1", port=int(sd1.url.rsplit(":", 1)[1]))
    result = api.txt2img(prompt=PROMPT, steps=4, width=64, height=64, seed=1234, sampler_name="Euler a",
                         cfg_scale=5, alwayson_scripts={"multipass": {"args": [{"enabled": True}]}})
    direct = sd1.txt2img(options={"enabled": True})
    assert np.array_equal(np.asarray(result.image.convert("RGB")), direct.images[0])
    assert "Multipass" in result.info["infotexts"][0]


def test_missing_face_swap_model_is_named(sd1):
    job = sd1.txt2img(options={"enabled": True, "face_swap": True,
                               "face_swap_images": encode(Image.new("RGB", (64, 64), (200, 170, 150)))})
    assert "inswapper_128.onnx" in job.params().get("Multipass warnings", "")

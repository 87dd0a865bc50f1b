"""The UI as the real WebUI wires it (its Gradio config and event functions): "Send to
img2img/inpaint" copies every Multipass control, and PNG Info / the paste button restore them."""

from __future__ import annotations

import uuid

import pytest

from lib_multipass.webui.args import UI_FIELDS

# option name -> the value a job sets (and a paste must restore), as the UI control shows it
SET = {"enabled": True, "denoising_strength": 0.6, "mask_prompt": "man | hat", "mask_dilate": "-5%",
       "mask_blur": 9, "person_steps": 12, "person_sampler": "DPM++ 2M", "inpaint_faces": True}


@pytest.fixture(scope="module")
def config(server):
    return server.get("/config").json()


def controls(config, tab):
    """elem_id suffix -> component id of the Multipass controls of `tab`."""
    prefix = f"multipass_{tab}_"
    return {c["props"]["elem_id"][len(prefix):]: c["id"] for c in config["components"]
            if str(c.get("props", {}).get("elem_id") or "").startswith(prefix)}


def test_send_to_img2img_and_inpaint_copy_every_control(config):
    source, target = controls(config, "txt2img"), controls(config, "img2img")
    names = list(UI_FIELDS)
    assert all(name in source and name in target for name in names)
    copies = 0
    for dep in config["dependencies"]:
        inputs, outputs = dep.get("inputs", []), dep.get("outputs", [])
        if source["enabled"] not in inputs or target["enabled"] not in outputs:
            continue
        copies += 1
        for name in names:  # the same position in the copy: value i goes to output i
            if source[name] in inputs:
                assert outputs[inputs.index(source[name])] == target[name], name
        assert all(source[name] in inputs for name in names)
    assert copies >= 2  # img2img and inpaint


def test_paste_button_restores_the_options(server, config):
    job = server.txt2img(options=SET)
    assert job.status == 200
    txt2img = controls(config, "txt2img")
    prompt = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "txt2img_prompt")
    index, dep = next((i, d) for i, d in enumerate(config["dependencies"])
                      if d.get("inputs") == [prompt] and txt2img["enabled"] in d.get("outputs", []) and d.get("backend_fn"))
    answer = server.post("/run/predict", {"fn_index": index, "data": [job.infotexts[0]],
                                          "session_hash": uuid.uuid4().hex[:11]})
    assert answer.status_code == 200, answer.text
    values = dict(zip(dep["outputs"], answer.json()["data"]))
    pasted = {name: values[txt2img[name]].get("value") for name in SET if txt2img.get(name) in values}
    assert pasted == SET
    plain = server.txt2img("a forest", options=None)
    answer = server.post("/run/predict", {"fn_index": index, "data": [plain.infotexts[0]],
                                          "session_hash": uuid.uuid4().hex[:11]})
    assert dict(zip(dep["outputs"], answer.json()["data"]))[txt2img["enabled"]].get("value") is False


def targets(dependency) -> list[int]:
    """The components a dependency listens to (gradio 4, Forge: [id, event] pairs)."""
    return [t[0] if isinstance(t, list) else t for t in dependency.get("targets", [])]


def image_in(server, config, image) -> object:
    """An image as an event's input: a data URL (gradio 3), an uploaded file (gradio 4)."""
    from webui_client import encode

    if not str(config.get("version", "3")).startswith("4"):
        return "data:image/png;base64," + encode(image)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = server.http.post(server.url + "/upload", files={"files": ("photo.png", buffer.getvalue())}).json()[0]
    return {"path": path, "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}


def image_out(server, value):
    from webui_client import decode

    if isinstance(value, str):
        return decode(value)
    import io

    import numpy as np
    from PIL import Image

    content = server.get("/file=" + value["path"]).content
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_preview_mask_shows_the_mask_over_an_uploaded_image(server, config):
    from PIL import Image

    txt2img = controls(config, "txt2img")
    index = next(i for i, d in enumerate(config["dependencies"]) if txt2img["preview_button"] in targets(d))
    photo = image_in(server, config, Image.new("RGB", (96, 64), (120, 100, 90)))
    data = [photo, "person", "", 0.0, "0", 0, False, None]  # threshold 0: the whole image is "person"
    answer = server.post("/run/predict", {"fn_index": index, "data": data, "session_hash": uuid.uuid4().hex[:11]})
    assert answer.status_code == 200, answer.text
    image, note = answer.json()["data"]
    assert image_out(server, image).shape == (64, 96, 3) and "mask covers" in note
    data[4] = "big"  # a bad dilate is said, not raised
    answer = server.post("/run/predict", {"fn_index": index, "data": data, "session_hash": uuid.uuid4().hex[:11]})
    assert "mask_dilate" in answer.json()["data"][1]

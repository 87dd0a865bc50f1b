"""API: `/multipass/v1/parse` and `/multipass/v1/mask`, and checking the multipass args of
`/sdapi/v1/txt2img|img2img` before any generation (a bad field -> HTTP 422 naming it).

The payload functions are plain dict -> dict; FastAPI is only imported by `add_routes`.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Awaitable, Callable

from PIL import Image

from ..errors import MultipassError, OptionsError, PromptError
from ..masking import gray_image
from ..options import MultipassOptions
from ..plan import Generation, make_plan
from ..prompt import parse

GENERATION_PATHS = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")
SCRIPT_KEY = "multipass"


def parse_payload(body: dict) -> dict:
    """{"prompt", "negative_prompt"?, "options"?} -> the same JSON as `python -m lib_multipass parse --json`."""
    from ..cli import parse_json

    job = parse(str(body.get("prompt", "")), str(body.get("negative_prompt", "")))
    options = MultipassOptions.from_dict(body.get("options") or {})
    return parse_json(job, make_plan(job, options, Generation()))


def decode_image(data: str) -> Image.Image:
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            return image.convert("RGB")
    except Exception as err:  # noqa: BLE001 - any undecodable payload is the caller's error
        raise MultipassError(f"`image` is not a base64 PNG/JPEG ({err.__class__.__name__})") from None


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_payload(body: dict, segmenter) -> dict:
    """{"image": base64, "options": {mask_*...}, "persons"?} -> {"mask": base64 PNG, area, instances, ...}."""
    from ..mask_cli import compute_mask

    if "image" not in body:
        raise MultipassError("`image` is missing: send the image as base64 PNG/JPEG")
    options = MultipassOptions.from_dict(body.get("options") or {})
    _, alpha, report = compute_mask(decode_image(body["image"]), options, segmenter, int(body.get("persons", 1)))
    return {"mask": encode_png(gray_image(alpha)), **report}


def check_generation_request(body: bytes) -> dict | None:
    """The error (as a JSON-able dict) of the multipass args in a txt2img/img2img request, or None."""
    try:
        request = json.loads(body or b"{}")
        scripts = request.get("alwayson_scripts") or {}
        args = next((v.get("args") for k, v in scripts.items() if k.lower() == SCRIPT_KEY), None)
    except (ValueError, AttributeError):
        return None  # not ours to judge: the WebUI answers malformed JSON itself
    if not args or not isinstance(args[0], dict):
        return None
    try:
        options = MultipassOptions.from_dict(args[0])
        if options.enabled:
            parse(str(request.get("prompt", "")), str(request.get("negative_prompt", "")))
        if options.enabled and options.controlnet is not None:
            from ..engines.webui_controlnet import NEEDED, external_code

            if external_code() is None:
                return {"error": "MultipassError", "field": "controlnet", "detail": NEEDED}
    except OptionsError as err:
        return {"error": "MultipassError", "field": err.field, "detail": str(err)}
    except PromptError as err:
        return {"error": "MultipassError", "field": "prompt", "offset": err.offset, "detail": str(err)}
    return None


class CheckMultipassArgs:
    """ASGI middleware: a txt2img/img2img request with bad multipass args gets 422, not a job."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in GENERATION_PATHS:
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        error = check_generation_request(body)
        if error is not None:
            payload = json.dumps(error).encode()
            await send({"type": "http.response.start", "status": 422,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def add_routes(demo: Any, app: Any) -> None:
    """on_app_started: our routes (behind --api-auth as the WebUI's own) and the args check."""
    from secrets import compare_digest

    from fastapi import Body, Depends, HTTPException
    from fastapi.security import HTTPBasic, HTTPBasicCredentials
    from modules import devices, shared

    from .hooks import setting, shared_segmenter
    from ..engines.webui import segmenter_source

    credentials = dict(item.split(":", 1) for item in (shared.cmd_opts.api_auth or "").split(",") if ":" in item)

    def auth(given: HTTPBasicCredentials = Depends(HTTPBasic())):
        if given.username in credentials and compare_digest(given.password, credentials[given.username]):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    dependencies = [Depends(auth)] if credentials else []

    def answer(fn, *args):
        try:
            return fn(*args)
        except MultipassError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None

    def parse_route(body: dict = Body(...)):
        return answer(parse_payload, body)

    def mask_route(body: dict = Body(...)):
        segmenter = shared_segmenter(segmenter_source(setting("multipass_segmenter") or None), str(devices.device))
        return answer(mask_payload, body, segmenter)

    app.add_api_route("/multipass/v1/parse", parse_route, methods=["POST"], dependencies=dependencies)
    app.add_api_route("/multipass/v1/mask", mask_route, methods=["POST"], dependencies=dependencies)
    try:
        app.add_middleware(CheckMultipassArgs)
    except RuntimeError:  # a Starlette that refuses middleware once started: process() still rejects
        pass

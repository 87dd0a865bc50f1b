"""API: `/multipass/v1/parse` and `/multipass/v1/mask`, and checking the multipass args of
`/sdapi/v1/txt2img|img2img` before any generation (a bad field -> HTTP 422 naming it).

The payload functions are plain dict -> dict; FastAPI is only imported by `add_routes`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import MultipassError, OptionsError, PromptError
from ..images import decode_image, encode_png
from ..masks.masking import gray_image
from ..options import MultipassOptions
from ..plan import Generation, dry_run_view, make_plan
from ..prompt import parse
from .args import options_from_args

GENERATION_PATHS = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")
SCRIPT_KEY = "multipass"


def _field(body: Mapping[str, Any], name: str, kind: type, default: Any, what: str) -> Any:
    value = body.get(name, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise OptionsError(f"`{name}` must be {what}, got {type(value).__name__}", name)
    return value


def parse_payload(body: Any) -> dict:
    """{"prompt", "negative_prompt"?, "options"?} -> the same JSON as `python -m lib_multipass parse --json`."""
    body = _body(body)
    prompt = _field(body, "prompt", str, "", "text")
    job = parse(prompt, _field(body, "negative_prompt", str, "", "text"))
    options = MultipassOptions.from_dict(_field(body, "options", dict, {}, "an object of options"))
    return dry_run_view(job, make_plan(job, options, Generation()))


def _body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise OptionsError(f"the request body must be a JSON object, got {type(body).__name__}", "body")
    return body


MIN_MASK_SIDE = 8


def mask_payload(body: Any, segmenter, max_persons: int, detect_faces: Any = None, detector: Any = None) -> dict:
    """{"image": base64, "options": {mask_*...}, "persons"?} -> {"mask": base64 PNG, area, instances, ...}."""
    from ..standalone.mask import compute_mask

    body = _body(body)
    if "image" not in body:
        raise OptionsError("`image` is missing: send the image as base64 PNG/JPEG", "image")
    try:
        image = decode_image(_field(body, "image", str, "", "base64 text"), "`image`").convert("RGB")
    except MultipassError as err:
        raise OptionsError(str(err), "image") from None
    if min(image.size) < MIN_MASK_SIDE:
        raise OptionsError(f"`image` is {image.width}x{image.height}; it must be at least "
                           f"{MIN_MASK_SIDE}x{MIN_MASK_SIDE} px", "image")
    persons = _field(body, "persons", int, 1, "a whole number")
    if not 1 <= persons <= max_persons:
        raise OptionsError(f"`persons` must be from 1 to {max_persons} (the setting 'Max person prompts per "
                           f"image'), got {persons}", "persons")
    options = MultipassOptions.from_dict(_field(body, "options", dict, {}, "an object of options"))
    _, alpha, report = compute_mask(image, options, segmenter, persons, detect_faces, detector=detector)
    return {"mask": encode_png(gray_image(alpha)), **report}


def error_payload(err: MultipassError) -> dict:
    """The 422 body: which field, what is wrong (and where, for a prompt)."""
    if isinstance(err, PromptError):
        return {"error": "MultipassError", "field": "prompt", "offset": err.offset, "detail": str(err)}
    return {"error": "MultipassError", "field": getattr(err, "field", None), "detail": str(err)}


def check_generation_request(body: bytes, host: Callable[[], Any] | None = None) -> dict | None:
    """The error (as a JSON-able dict) of the multipass args in a txt2img/img2img request, or None."""
    from .checks import check_request, current_host

    try:
        request = json.loads(body or b"{}")
        scripts = request.get("alwayson_scripts") or {}
        entry = next((v for k, v in scripts.items() if k.lower() == SCRIPT_KEY), None)
    except (ValueError, AttributeError):
        return None  # not ours to judge: the WebUI answers malformed JSON itself
    if entry is None:
        return None
    try:
        args = entry.get("args", []) if isinstance(entry, dict) else None
        if not isinstance(args, list):
            raise OptionsError('`alwayson_scripts.multipass.args` must be a list: [{"enabled": true, ...}]', "args")
        options = options_from_args(args)
        if options.enabled:
            check_request(request, options, (host or current_host)())
    except MultipassError as err:
        return error_payload(err)
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
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPBasic, HTTPBasicCredentials
    from modules import shared

    from ..option_docs import json_schema
    from .hooks import current_segmenter
    from .settings import setting
    from .summary import summary_html

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
            return JSONResponse(status_code=422, content=error_payload(err))

    def parse_route(body: Any = Body(...)):
        return answer(parse_payload, body)

    def mask_route(body: Any = Body(...)):
        from .engine import current_detector, find_faces

        return answer(mask_payload, body, current_segmenter(), int(setting("multipass_max_persons")), find_faces,
                      current_detector())

    def summary_route(body: Any = Body(...)):  # the page's plan summary: text in, HTML out, no files
        body = body if isinstance(body, dict) else {}
        size = body.get("size")
        size = tuple(size) if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size) \
            else (512, 512)
        return {"html": summary_html(str(body.get("prompt") or ""), str(body.get("negative_prompt") or ""),
                                     body.get("ui") if isinstance(body.get("ui"), dict) else {}, size)}

    app.add_api_route("/multipass/v1/parse", parse_route, methods=["POST"], dependencies=dependencies)
    app.add_api_route("/multipass/v1/mask", mask_route, methods=["POST"], dependencies=dependencies)
    app.add_api_route("/multipass/v1/summary", summary_route, methods=["POST"])
    app.add_api_route("/multipass/v1/options", json_schema, methods=["GET"], dependencies=dependencies)
    install_check(app)


def install_check(app: Any) -> None:
    """Put the args check in front of the app. Starlette refuses `add_middleware` once its
    middleware stack is built (seen with sd-webui-controlnet installed): then the built
    stack itself is wrapped."""
    try:
        app.add_middleware(CheckMultipassArgs)
    except RuntimeError:
        if not isinstance(app.middleware_stack, CheckMultipassArgs):
            app.middleware_stack = CheckMultipassArgs(app.middleware_stack)

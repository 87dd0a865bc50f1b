"""Fixtures of the real-WebUI acceptance suite: the server (started once, offline, on
127.0.0.1) and the checkpoint a test runs on. Skipped without `WEBUI_DIR`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webui_client import (
    EXTENSION,
    FIRST_JOB,
    FLAGS,
    FORGE,
    HERE,
    LORA,
    PORT,
    ROOT,
    SD1,
    SDXL,
    START_TIMEOUT,
    TINY_DETECTOR,
    TINY_NANODET,
    Server,
)


def _webui_dir() -> Path | None:
    value = os.environ.get("WEBUI_DIR")
    if not value:
        return None
    path = Path(value).resolve()
    return path if (path / "launch.py").is_file() else None


def _copy_extension(webui: Path) -> Path:
    """This working tree (tracked and untracked, not ignored files) as WEBUI_DIR/extensions/<name>."""
    target = webui / "extensions" / EXTENSION
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file() and not name.startswith("tests/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    hooks = webui / "extensions" / f"{EXTENSION}-testhooks"  # a face in every image (see the hook's docstring)
    if hooks.exists():
        shutil.rmtree(hooks)
    shutil.copytree(HERE / "testhooks", hooks)
    return target


def _build_models(webui: Path) -> None:
    python = webui / "venv" / "bin" / "python"
    if not (webui / TINY_DETECTOR / "config.json").is_file():  # with the host's own transformers
        subprocess.run([str(python), "-c", "import sys, pathlib; sys.path.insert(0, sys.argv[1]); "
                        "from lib_multipass.tiny_models import build_detector; build_detector(pathlib.Path(sys.argv[2]), 4)",
                        str(ROOT), str(webui / TINY_DETECTOR)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if not (webui / TINY_NANODET / "nanodet.json").is_file():  # placed as NanoDet's first download would be
        subprocess.run([str(python), "-c", "import sys, pathlib; sys.path.insert(0, sys.argv[1]); "
                        "from lib_multipass.tiny_models import build_nanodet; build_nanodet(pathlib.Path(sys.argv[2]), 4)",
                        str(ROOT), str(webui / TINY_NANODET)], check=True)
    prepare = "prepare_forge.sh" if FORGE else "prepare_webui.sh"
    if not (webui / "models" / "Stable-diffusion" / SD1).is_file():
        pytest.exit(f"{webui} has no tiny models: run tests/webui_real/{prepare} {webui} first", 2)
    if FORGE:  # prepare_forge.sh built the model and its LoRA; CLIPSeg is the same everywhere
        if not (webui / "models" / "clipseg" / "config.json").is_file():
            subprocess.run([str(python), "-c", "import sys, tiny_webui_extras as e; e.check_clipseg("
                            "e.build_clipseg(__import__('pathlib').Path(sys.argv[1]), 13))", str(webui)],
                           cwd=HERE, check=True)
        return
    if not (webui / "models" / "Lora" / f"{LORA[SD1]}.safetensors").is_file() or not (
            webui / "models" / "clipseg" / "config.json").is_file():
        subprocess.run([str(python), str(HERE / "tiny_webui_extras.py"), "--webui-dir", str(webui)], check=True)


def _wait(url: str, process: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.exit(f"the WebUI exited with {process.returncode}; its log:\n{log.read_text()[-4000:]}", 2)
        try:
            # our own route is added by app_started, after the API computed its default script
            # args: a job sent when /sdapi/ first answers can fail inside the WebUI (seen on Forge)
            if requests.get(url + "/multipass/v1/options", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.exit(f"the WebUI did not answer within {START_TIMEOUT} s; its log:\n{log.read_text()[-4000:]}", 2)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    webui = _webui_dir()
    if webui is None:
        pytest.skip("no WebUI checkout: set WEBUI_DIR to an AUTOMATIC1111 1.10.1, Forge 2, Forge Classic or "
                    "reForge checkout (make webui-acceptance, make forge-acceptance)")
    pytest.importorskip("requests")
    _build_models(webui)
    _copy_extension(webui)
    log = tmp_path_factory.mktemp("webui") / "webui.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": os.environ.get("WEBUI_HF_HOME", str(webui.parent / "hf-home"))}
    command = [str(webui / "venv" / "bin" / "python"), "launch.py", *FLAGS, "--port", str(PORT),
               "--ckpt", str(webui / "models" / "Stable-diffusion" / SD1), *os.environ.get("WEBUI_FLAGS", "").split()]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=webui, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{PORT}", process, log)
        running = Server(webui, log, process)
        running.first = running.txt2img(**FIRST_JOB)  # the very first job after the start
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        print(f"\nWebUI log: {log}", file=sys.stderr)


@pytest.fixture
def sd1(server) -> Server:
    server.use(SD1)
    return server


@pytest.fixture
def sdxl(server) -> Server:
    if not (server.webui / "models" / "Stable-diffusion" / SDXL).is_file():
        pytest.skip(f"no {SDXL} in this WebUI (the Forge checkout has only a tiny SD 1.5)")
    server.use(SDXL)
    yield server
    server.use(SD1)

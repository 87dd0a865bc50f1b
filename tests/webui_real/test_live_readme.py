"""README's API examples work verbatim on the real WebUI: the JSON with plain `requests`, the
Python snippet with the `webuiapi` package. Only the size and steps are made small (the tiny
model needs minutes for 30 steps at 512 px on a CPU): that is what SMALL changes, nothing else."""

from __future__ import annotations

import json
import re

import pytest
from webui_client import ROOT

SMALL = {"steps": 4, "width": 64, "height": 64}


def readme_block(language: str, after: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf8")
    start = text.index(after)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.S).group(1)


def test_the_json_example_with_requests(sd1):
    body = {**json.loads(readme_block("json", "API (`/sdapi/v1/txt2img`")), **SMALL}
    answer = sd1.post("/sdapi/v1/txt2img", body)
    assert answer.status_code == 200 and answer.json()["images"]
    info = json.loads(answer.json()["info"])
    assert "Multipass denoise: 0.6" in info["infotexts"][0]


def test_the_python_example_with_webuiapi(sd1, tmp_path, monkeypatch):
    pytest.importorskip("webuiapi")
    code = readme_block("python", "The same with the `webuiapi` client package")
    code = code.replace("port=7860", f"port={sd1.url.rsplit(':', 1)[1]}")
    code = code.replace("steps=30,", "steps=4, width=64, height=64,")
    assert "width=64" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "final.png").is_file()

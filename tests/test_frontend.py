"""javascript/multipass.js: its pure logic under node's test runner, its labels in a real browser."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="{css}"></head><body>
<div id="txt2img_prompt"><label><span>Prompt</span><textarea>{prompt}</textarea></label></div>
<div id="img2img_prompt"><label><span>Prompt</span><textarea>a plain prompt</textarea></label></div>
<script src="{js}"></script>
<script>
document.addEventListener("DOMContentLoaded", function () {{
    var box = document.querySelector("#img2img_prompt textarea");
    box.value = "a beach BREAK sks woman";
    box.dispatchEvent(new Event("input"));
    document.body.dataset.attachedAgain = String(window.multipassAttachAll(document));
}});
</script></body></html>"""


def test_segment_logic_under_node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: `make tools` (as root) installs it; the JS logic is not tested")
    proc = subprocess.run([node, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# pass 4" in proc.stdout


def test_labels_render_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: `make tools` (as root) installs it; the labels are not rendered")
    prompt = "a forest BREAK photo BREAK ohwx man <lora:x:1> BREAK sks woman"
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(css=(ROOT / "style.css").as_uri(), js=(ROOT / "javascript" / "multipass.js").as_uri(),
                                prompt=html.escape(prompt)), encoding="utf-8")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--allow-file-access-from-files", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = proc.stdout
    assert proc.returncode == 0 and "multipass_txt2img_segments" in dom, proc.stderr[-2000:]
    strip = re.search(r'<div class="multipass-segments" id="multipass_txt2img_segments">(.*?)</div>', dom).group(1)
    assert re.findall(r'data-role="([^"]+)"', strip) == ["base", "common", "person 1", "person 2"]
    other = re.search(r'id="multipass_img2img_segments">(.*?)</div>', dom).group(1)
    assert re.findall(r'data-role="([^"]+)"', other) == ["base", "person 1"]  # updated while "typing"
    assert 'data-attached-again="0"' in dom  # attaching twice adds nothing
    assert "<label><span>Prompt</span><textarea" in dom  # the textarea is where it was, untouched

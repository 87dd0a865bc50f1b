"""The UI in headless Chromium (Playwright, the system's /usr/bin/chromium): the accordion at
1280 and 1920 px without overflow or console errors, a plan summary that follows fast typing,
and "Send to img2img" carrying the Multipass controls after a real generation. Screenshots go
to $WEBUI_SCREENSHOTS (default: the test's temporary folder), for a person to look at."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from webui_client import LORA, SD1

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PROMPT = f"a forest clearing BREAK photo BREAK ohwx man <lora:{LORA[SD1]}:1>"


@pytest.fixture(scope="module")
def browser(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("WEBUI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, server, width: int):
    page = browser.new_page(viewport={"width": width, "height": 1100})
    errors: list[str] = []
    def on_console(message):
        if message.type == "error":
            stacks = []
            for arg in message.args:
                try:
                    stacks.append(arg.evaluate("e => (e && e.stack) || String(e)"))
                except Exception:  # noqa: BLE001 - a detail for the report only
                    pass
            errors.append(" | ".join([message.text, *stacks]))

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{error} {error.stack or ''}"))
    page.goto(server.url, wait_until="load")  # gradio 4 (Forge) keeps a connection open: never network-idle
    page.wait_for_selector("#multipass_txt2img", timeout=60000)
    return page, errors


def open_accordion(page, tab="txt2img"):
    page.locator(f"#multipass_{tab} .label-wrap").first.click()
    page.locator(f"#multipass_{tab}_plan").first.wait_for(state="visible")


@pytest.mark.parametrize("width", [1280, 1920])
def test_accordion_fits_and_the_summary_follows_typing(browser, server, shots, width):
    page, errors = open_page(browser, server, width)
    open_accordion(page)
    box = page.locator("#txt2img_prompt textarea")
    box.click()
    for text in ("a forest", "a forest BREAK man", PROMPT.replace("ohwx", "sks"), PROMPT):
        box.fill(text)  # faster than a request: only the newest answer may stay
    page.wait_for_function(
        "() => document.querySelector('#multipass_txt2img_plan').innerText.includes('" + LORA[SD1] + ":1')", timeout=15000)
    page.wait_for_timeout(800)
    summary = page.locator("#multipass_txt2img_plan").first.inner_text()
    assert "person 1" in summary and "sks" not in summary and "ohwx man" in summary
    accordion = page.locator("#multipass_txt2img")
    page.screenshot(path=str(shots / f"txt2img-{width}.png"), full_page=False)
    accordion.screenshot(path=str(shots / f"multipass-accordion-{width}.png"))
    for tab in ("Faces", "ControlNet"):
        found = page.locator("#multipass_txt2img_tabs button", has_text=tab)
        if found.count() and found.first.is_visible():
            found.first.click()
            accordion.screenshot(path=str(shots / f"multipass-{tab.lower()}-{width}.png"))
    overflow = page.evaluate("""() => {
        const box = document.querySelector('#multipass_txt2img');
        const plan = document.querySelector('#multipass_txt2img_plan');
        return {box: box.getBoundingClientRect().right, page: document.documentElement.clientWidth,
                plan: plan.scrollWidth - plan.clientWidth, height: plan.getBoundingClientRect().height};
    }""")
    assert overflow["box"] <= overflow["page"] and overflow["plan"] <= 1 and overflow["height"] < 260, overflow
    assert ours(errors) == []
    page.close()


def ours(errors: list[str]) -> list[str]:
    """The page errors that come from this extension. (A stock 1.10.1 with every extension
    disabled throws "Cannot read properties of undefined (reading 'props')" from gradio's
    Blocks code on Generate: that one is the WebUI's own, seen with and without us.)"""
    return [e for e in errors if "multipass" in e.lower()]


def test_send_to_img2img_keeps_the_job(browser, server, shots):
    server.use(SD1)
    page, errors = open_page(browser, server, 1280)
    open_accordion(page)
    page.locator("#txt2img_prompt textarea").fill(PROMPT)
    page.locator("#multipass_txt2img_enabled input[type=checkbox]").check()
    page.locator("#multipass_txt2img_tabs button", has_text="Person pass").first.click()
    denoise = page.locator("#multipass_txt2img_denoising_strength input[type=number]")
    denoise.fill("0.55")
    denoise.press("Enter")
    page.locator("#txt2img_steps input[type=number]").fill("4")
    page.locator("#txt2img_width input[type=number]").fill("64")
    page.locator("#txt2img_height input[type=number]").fill("64")
    page.locator("#txt2img_generate").click()
    page.wait_for_selector("#txt2img_gallery img", timeout=120000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "txt2img-generated.png"))
    page.locator("#txt2img_send_to_img2img").click()  # the 🖼️ button under the gallery
    page.wait_for_selector("#multipass_img2img", state="visible", timeout=30000)
    page.wait_for_timeout(1500)
    assert page.locator("#multipass_img2img_enabled input[type=checkbox]").is_checked()
    assert page.locator("#multipass_img2img_denoising_strength input[type=number]").input_value() == "0.55"
    page.screenshot(path=str(shots / "img2img-after-send.png"))
    assert ours(errors) == []
    page.close()

"""install.py: only what is missing or too old goes to the WebUI's own pip helper; never torch."""

import runpy
import sys
import types
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_installer(monkeypatch, versions):
    calls = []
    monkeypatch.setitem(sys.modules, "launch", types.SimpleNamespace(run_pip=lambda cmd, desc=None: calls.append(cmd)))

    def version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "version", version)
    runpy.run_path(str(ROOT / "install.py"))
    return calls


def webui_pins():
    """The packages of a stock WebUI 1.10.1 (its requirements_versions.txt)."""
    return {"transformers": "4.30.2", "opencv-python": "4.11.0.86", "numpy": "1.26.2", "Pillow": "9.5.0",
            "protobuf": "3.20.0"}


def test_a_stock_webui_gets_nothing_installed(monkeypatch):
    assert run_installer(monkeypatch, webui_pins()) == []


def test_never_torch_protobuf_or_a_second_opencv(monkeypatch):
    calls = run_installer(monkeypatch, {})
    assert calls and not any(word in call for call in calls for word in ("torch", "protobuf", "onnx", "insightface"))
    assert sum("opencv" in call for call in calls) == 1


def test_old_versions_are_raised_to_the_floor(monkeypatch):
    old = {**webui_pins(), "transformers": "4.19.2"}
    assert run_installer(monkeypatch, old) == ['install "transformers>=4.25.0"']

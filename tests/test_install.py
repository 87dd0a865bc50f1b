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


def test_installs_only_what_the_webui_lacks(monkeypatch):
    webui = {"transformers": "4.30.2", "opencv-python": "4.11.0.86", "numpy": "1.26.2", "Pillow": "9.5.0"}
    calls = run_installer(monkeypatch, webui)
    assert calls == ['install "onnxruntime>=1.16.0"', 'install "onnx==1.14.1" "protobuf>=3.20.2,<3.21"',
                     'install "insightface==2.1"']
    assert not any("torch" in call or "opencv" in call for call in calls)


def test_old_versions_are_raised_to_the_floor(monkeypatch):
    old = {"transformers": "4.19.2", "opencv-python": "4.11.0.86", "numpy": "1.26.2", "Pillow": "9.5.0",
           "onnxruntime": "1.16.3", "onnx": "1.14.1", "insightface": "0.7.3"}
    assert run_installer(monkeypatch, old) == ['install "transformers>=4.25.0"']

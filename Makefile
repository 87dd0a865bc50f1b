# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned versions (torch==2.13.0, CPU) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The core (no torch) must also run under the WebUI's pinned packages (AUTOMATIC1111 1.10.1 and
# Forge 2 pin the same numpy and Pillow) and under Forge Neo's (numpy 2, Pillow 12): two more venvs.
PINS := .venv-webui-pins
NEO_PINS := .venv-neo-pins
CORE_TESTS := tests/test_prompt.py tests/test_options_plan.py tests/test_masks_crop.py tests/test_runner.py

.PHONY: demo test bench bench-masks bench-finish clean tools webui-acceptance forge-acceptance readme-options

$(VENV)/.installed: requirements-standalone.txt requirements-dev.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

$(PINS)/.installed: requirements-webui-pins.txt
	$(PYTHON) -m venv $(PINS)
	$(PINS)/bin/python -m pip install --quiet -r requirements-webui-pins.txt
	touch $@

$(NEO_PINS)/.installed: requirements-neo-pins.txt
	$(PYTHON) -m venv $(NEO_PINS)
	$(NEO_PINS)/bin/python -m pip install --quiet -r requirements-neo-pins.txt
	touch $@

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m lib_multipass demo --out out/demo

# node runs the JavaScript tests; headless chromium renders the prompt labels (Debian packages).
# A separate step because it needs root: `make test` skips those two tests without them.
tools:
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(VENV)/.installed $(PINS)/.installed $(NEO_PINS)/.installed
	$(PY) -m ruff check lib_multipass scripts tests bench install.py
	$(PY) -m mypy
	$(PINS)/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS)
	$(NEO_PINS)/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# The acceptance suite on a real AUTOMATIC1111 1.10.1 checkout (never committed here):
#   make webui-acceptance WEBUI_DIR=/path/to/stable-diffusion-webui
# prepares its venv and tiny models once, copies this tree into its extensions/, starts it offline.
webui-acceptance: $(VENV)/.installed tools
	@test -n "$(WEBUI_DIR)" || { echo "give WEBUI_DIR=<an AUTOMATIC1111 1.10.1 checkout>"; exit 2; }
	bash tests/webui_real/prepare_webui.sh "$(WEBUI_DIR)"
	$(PY) -m pip install --quiet playwright==1.65.2  # drives the system's chromium (make tools); no browser download
	WEBUI_DIR="$(abspath $(WEBUI_DIR))" $(PY) -m pytest -q -p no:cacheprovider tests/webui_real

# The same suite on a real Forge 2, Forge Classic or reForge checkout (repositories/ filled):
#   make forge-acceptance FORGE_DIR=/path/to/stable-diffusion-webui-forge
forge-acceptance: $(VENV)/.installed tools
	@test -n "$(FORGE_DIR)" || { echo "give FORGE_DIR=<a Forge 2, Forge Classic or reForge checkout>"; exit 2; }
	bash tests/webui_real/prepare_forge.sh "$(FORGE_DIR)"
	$(PY) -m pip install --quiet playwright==1.65.2
	WEBUI_DIR="$(abspath $(FORGE_DIR))" $(PY) -m pytest -q -p no:cacheprovider tests/webui_real

# README's options table is the declarations' output; `make test` fails until it is pasted anew.
readme-options: $(VENV)/.installed
	$(PY) -c "import re, pathlib; from lib_multipass.option_docs import markdown_table as t; p = pathlib.Path('README.md'); \
	p.write_text(re.sub(r'(<!-- options table: .*? -->\n).*?(<!-- end of options table -->)', \
	lambda m: m.group(1) + t() + m.group(2), p.read_text(encoding='utf-8'), flags=re.S), encoding='utf-8')"

bench: $(VENV)/.installed
	$(PY) bench/bench_overhead.py

bench-masks: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) bench/bench_masks.py

bench-finish: $(VENV)/.installed
	$(PY) bench/bench_finish.py

clean:
	rm -rf $(VENV) $(PINS) $(NEO_PINS) out .pytest_cache .hypothesis

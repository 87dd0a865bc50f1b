"""sd-webui-multipass core: prompt grammar, options, pass planning, masks and engines.

Host-agnostic: nothing here imports the WebUI or gradio (only the `webui/` adapter may),
and nothing imports torch or diffusers at module level outside `engines/diffusers.py`.
"""

__version__ = "0.1.0"

"""The WebUI side of the core: argument tables, prompt rewriting, the per-job hooks, UI, API,
XYZ axes and settings. Modules here import `modules`/`gradio` only inside functions that the
WebUI calls, so the tables and the prompt logic are testable anywhere."""

"""modules/script_callbacks.py: registration functions keep (name, callback); tests call them."""

callbacks: dict[str, list] = {"app_started": [], "ui_settings": [], "before_ui": [], "infotext_pasted": [],
                              "after_component": [], "script_unloaded": []}


def _add(kind, callback, name=None):
    callbacks[kind].append(callback)


def on_app_started(callback, *, name=None):
    _add("app_started", callback, name)


def on_ui_settings(callback, *, name=None):
    _add("ui_settings", callback, name)


def on_before_ui(callback, *, name=None):
    _add("before_ui", callback, name)


def on_infotext_pasted(callback, *, name=None):
    _add("infotext_pasted", callback, name)


def on_after_component(callback, *, name=None):
    _add("after_component", callback, name)


def on_script_unloaded(callback, *, name=None):
    _add("script_unloaded", callback, name)

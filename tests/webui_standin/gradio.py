"""A stand-in of gradio 3.41 (the WebUI's) for building the extension's UI in tests: the
components keep their constructor arguments and events; layout blocks are context managers."""

from __future__ import annotations


_open: list[Block] = []  # the layout blocks entered and not yet left (gradio's Context.block)


class Block:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.parent = _open[-1] if _open else None
        self.value = kwargs.get("value")
        self.label = kwargs.get("label")
        self.elem_id = kwargs.get("elem_id")
        self.visible = kwargs.get("visible", True)
        self.events: list[tuple] = []

    def __enter__(self):
        _open.append(self)
        return self

    def __exit__(self, *exc):
        _open.remove(self)
        return False

    def ancestors(self):
        block = self.parent
        while block is not None:
            yield block
            block = block.parent

    def _event(self, name, **kwargs):
        self.events.append((name, kwargs))

    def change(self, **kwargs):
        self._event("change", **kwargs)

    def click(self, **kwargs):
        self._event("click", **kwargs)

    def upload(self, **kwargs):
        self._event("upload", **kwargs)


class Accordion(Block):
    pass


class Row(Block):
    pass


class Column(Block):
    pass


class Group(Block):
    pass


class Tabs(Block):
    pass


class Tab(Block):
    def __init__(self, label=None, **kwargs):
        super().__init__(label=label, **kwargs)


class Textbox(Block):
    pass


class Checkbox(Block):
    pass


class Slider(Block):
    def __init__(self, minimum=0, maximum=100, value=None, step=None, **kwargs):
        super().__init__(value=minimum if value is None else value, **kwargs)
        self.minimum, self.maximum, self.step = minimum, maximum, step


class Dropdown(Block):
    def __init__(self, choices=None, value=None, **kwargs):
        super().__init__(value=value, **kwargs)
        self.choices = list(choices or [])


class Code(Block):
    pass


class HTML(Block):
    pass


class Markdown(Block):
    pass


class Button(Block):
    pass


class Image(Block):
    pass


class File(Block):
    pass

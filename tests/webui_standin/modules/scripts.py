"""modules/scripts.py: Script hooks with the real signatures; ScriptRunner dispatch as in 1.10.1."""

from collections import namedtuple

from modules import errors

AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list = []


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    infotext_fields = None
    paste_field_names = None
    api_info = None
    sorting_priority = 0

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        pass

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def after_component(self, component, **kwargs):
        pass


class ScriptRunner:
    """Only the always-on part: each hook calls every script with its slice of p.script_args."""

    def __init__(self, scripts_and_widths=()):
        """`(script, number of ui() components)` pairs, as initialize_scripts/setup_ui would lay out args."""
        self.scripts = [script for script, _ in scripts_and_widths]
        self.alwayson_scripts = list(self.scripts)
        self.callback_map = {}
        start = 0
        for script, width in scripts_and_widths:
            script.alwayson = True
            script.args_from = start
            start = script.args_to = start + width

    def ordered_scripts(self, method_name):
        """As 1.10.1's ordered_callbacks: the list is cached per hook in `callback_map` and made
        anew only when the number of always-on scripts changes."""
        count, cached = self.callback_map.get(method_name, (-1, None))
        if cached is None or count != len(self.alwayson_scripts):
            cached = [s for s in self.alwayson_scripts
                      if getattr(type(s), method_name) is not getattr(Script, method_name)]
            self.callback_map[method_name] = (len(self.alwayson_scripts), cached)
        return cached

    def _each(self, method_name, p, *extra, **kwargs):
        for script in self.ordered_scripts(method_name):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, method_name)(p, *extra, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {method_name}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._each("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def postprocess_batch(self, p, images, **kwargs):
        self._each("postprocess_batch", p, images=images, **kwargs)

    def postprocess_batch_list(self, p, pp, **kwargs):
        self._each("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp):
        self._each("postprocess_image", p, pp)

    def postprocess_image_after_composite(self, p, pp):
        self._each("postprocess_image_after_composite", p, pp)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)

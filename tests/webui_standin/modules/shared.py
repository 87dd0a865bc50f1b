"""modules/shared.py (+ shared_state.State, options.Options/OptionInfo) as used by extensions."""

from types import SimpleNamespace

from modules import paths


class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    sampling_step = 0
    sampling_steps = 0
    processing_has_refined_job_count = False

    def begin(self, job="(unknown)"):
        """What the WebUI does before every UI or API job."""
        self.sampling_step = self.job_no = 0
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.skipped = self.interrupted = self.stopping_generation = False
        self.job = job

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False, category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section

    def info(self, info):
        return self

    def needs_reload_ui(self):
        return self


class Options:
    def __init__(self):
        object.__setattr__(self, "data", {"face_restoration": False, "samples_format": "png", "overlay_inpaint": True})
        object.__setattr__(self, "data_labels", {})

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def get_default(self, key):
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def __getattr__(self, item):
        if item in self.data:
            return self.data[item]
        raise AttributeError(item)

    def __setattr__(self, key, value):
        self.data[key] = value


state = State()
opts = Options()
cmd_opts = SimpleNamespace(api_auth=None, no_prompt_history=False, data_dir=paths.data_path)
sd_model = SimpleNamespace(name="standin-model")
models_path = paths.models_path


class _Upscaler:
    """modules/upscaler.py: `scaler.upscale(img, scale, data_path)`; calls recorded."""

    def __init__(self, name: str, resample: int):
        self.name, self.resample, self.calls = name, resample, []

    def upscale(self, img, scale, selected_model=None):
        self.calls.append((img.size, scale, selected_model))
        return img.resize((int((img.width * scale) // 8 * 8), int((img.height * scale) // 8 * 8)), self.resample)


class _UpscalerData:
    def __init__(self, name: str, resample: int, data_path=None):
        self.name, self.data_path, self.scaler = name, data_path, _Upscaler(name, resample)


#: shared.sd_upscalers as 1.10.1 lists them without downloaded models
sd_upscalers = [_UpscalerData("None", 0), _UpscalerData("Lanczos", 1), _UpscalerData("Nearest", 0),
                _UpscalerData("R-ESRGAN 4x+", 3, "models/RealESRGAN/RealESRGAN_x4plus.pth")]

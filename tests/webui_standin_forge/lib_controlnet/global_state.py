"""lib_controlnet/global_state.py: the model names ("stem [hash]") found by the folder scan."""

ON_DISK = ["control_v11p_sd15_openpose [cab727d4]", "outer_cn [00000000]"]
controlnet_names = ["None"]
scans = []


def update_controlnet_filenames():
    global controlnet_names
    scans.append(1)
    controlnet_names = ["None", *ON_DISK]


def get_all_controlnet_names():
    return controlnet_names

import tempfile

data_path = tempfile.mkdtemp(prefix="webui-standin-")
models_path = data_path + "/models"
script_path = data_path

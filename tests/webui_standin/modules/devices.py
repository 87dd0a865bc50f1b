"""modules/devices.py: the device the model runs on."""

device = "cpu"

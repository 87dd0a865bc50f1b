"""extensions-builtin/Lora/networks.py (on sys.path inside the WebUI): the LoRAs on disk by name."""

available_networks: dict = {}
available_network_aliases: dict = {}


def list_available_networks():
    pass

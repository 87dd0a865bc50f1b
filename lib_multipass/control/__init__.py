"""ControlNet hints made from photos."""

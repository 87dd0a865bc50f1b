"""Masks: segmenters, mask operations and the in-paint crop."""

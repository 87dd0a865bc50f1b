"""Faces: detection (and which person a face belongs to) and face swap."""

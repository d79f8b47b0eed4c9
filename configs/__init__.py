"""Typed, frozen configuration presets (dataclasses) turned into plain keyword arguments."""

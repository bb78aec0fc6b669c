"""Camera sources, chosen by `[camera] kind`: one module per kind, each registering itself in CAMERAS."""
from . import demo, files, mjpeg, picamera2  # noqa: F401  (each module registers its sources)
from .base import CAMERAS, Camera, CameraError, Frame

__all__ = ["CAMERAS", "Camera", "CameraError", "Frame"]

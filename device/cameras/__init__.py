"""Camera sources, chosen by `[camera] kind`: picamera2, opencv, images, demo."""
from . import demo, files, picamera2  # noqa: F401  (each module registers its sources)
from .base import CAMERAS, Camera, CameraError, Frame

__all__ = ["CAMERAS", "Camera", "CameraError", "Frame"]

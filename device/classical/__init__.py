"""The classical fallback segmenter: k-means colours, a face box, grid DBSCAN, convex hull and scalp-line ring."""
from .faces import FACE_FINDERS, face_finder_for, read_json_box
from .pipeline import ClassicalResult, ClassicalSegmenter

__all__ = ["FACE_FINDERS", "ClassicalResult", "ClassicalSegmenter", "face_finder_for", "read_json_box"]

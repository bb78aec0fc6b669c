"""The classical fallback costs only its own thread's CPU: no library thread left spinning between frames.

OpenCV's wheels bundle OpenBLAS, and a matrix product of 16k rows or more (cv2.gemm as numpy's matmul) wakes its
worker threads, which then spin for about 0.1 s: at a camera's frame rate that was a whole core spinning for nothing
(the daemon in classical mode at 150% CPU instead of 52%). Measured in a process of its own, as the daemon runs it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.classical.kmeans import centre_distances, nearest_centre

ROOT = Path(__file__).resolve().parents[2]
FASSEG = ROOT.parent / "shared" / "data" / "fasseg" / "V2" / "Test_RGB"

# Segments real photos at 30 fps with OpenCV on the calling thread (as the daemon sets it) and prints the CPU the
# process's other threads took over the same stretch, and its own.
SCRIPT = r"""
import json, sys, time
import cv2
from types import SimpleNamespace
from device.cli import opencv_on_calling_threads
from device.segmenters import ClassicalSegmenterAdapter
opencv_on_calling_threads()
photos = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in sys.argv[1:]]
seg = ClassicalSegmenterAdapter(SimpleNamespace(face_cascade=""))
frames = [seg.fit(p) for p in photos]
for f in frames:
    seg.segment(f)
time.sleep(0.3)
process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
for i in range(45):
    seg.segment(frames[i % len(frames)])
    time.sleep(max(0.0, wall + (i + 1) / 30 - time.perf_counter()))
wall = time.perf_counter() - wall
own = time.thread_time() - thread
print(json.dumps({"others": (time.process_time() - process - own) / wall, "own": own / wall}))
"""


def test_segmenting_at_the_camera_rate_leaves_no_thread_spinning():
    photos = [FASSEG / f"{n}.png" for n in (1, 12, 23)]
    if not all(p.is_file() for p in photos):
        pytest.skip(f"real data not found under {FASSEG}")
    out = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, photos)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    share = json.loads(out.stdout.strip().splitlines()[-1])
    assert share["own"] > 0.05  # it did segment (about half a core here)
    assert share["others"] < 0.1, share  # spinning BLAS threads took 0.7-1.0 of a core


def test_centre_distances_are_the_squared_distances_less_the_pixels_own_norm():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (20_000, 3)).astype(np.uint8)
    centres = rng.uniform(0, 255, (12, 3)).astype(np.float32)
    x = pixels.astype(np.float64)
    want = ((x[:, None, :] - centres[None].astype(np.float64)) ** 2).sum(2) - (x * x).sum(1, keepdims=True)
    got = centre_distances(pixels, centres)
    assert got.dtype == np.float32 and got.shape == (20_000, 12)
    np.testing.assert_allclose(got, want, atol=0.05)
    # integer centres: every term is an integer below 2**24, so the nearest centre is exact
    whole = rng.integers(0, 256, (12, 3)).astype(np.float32)
    full = ((x[:, None, :] - whole[None]) ** 2).sum(2)
    np.testing.assert_array_equal(nearest_centre(pixels, whole), full.argmin(1))

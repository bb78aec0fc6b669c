"""The Picamera2 camera source against a fake with the real library's formats, byte orders and buffers."""
import threading
import time

import cv2
import numpy as np
import pytest

from device.cameras import CAMERAS, CameraError
from device.cameras.picamera2 import packed_to_rgb, stream_to_pixels, stream_to_rgb, yuv420_to_rgb
from device.config import CameraConfig
from tests.device import fake_picamera2


@pytest.fixture
def photo(data_root):
    import cv2
    img = cv2.imread(str(data_root / "figaro1k/Original/Testing/Frame00010-org.jpg"))
    return cv2.cvtColor(cv2.resize(img, (640, 480)), cv2.COLOR_BGR2RGB)


@pytest.fixture
def fake(monkeypatch):
    return fake_picamera2.install(monkeypatch)


def make(lores_format="auto", mirror=False, preview="null"):
    cfg = CameraConfig(kind="picamera2", width=640, height=480, mirror=mirror, lores_format=lores_format)
    return CAMERAS.create("picamera2", cfg, (256, 256), preview=preview)


@pytest.mark.parametrize("fmt", ["XBGR8888", "XRGB8888", "RGB888", "BGR888"])
def test_packed_formats_come_back_as_rgb(photo, fmt):
    assert np.array_equal(packed_to_rgb(fake_picamera2._encode(photo, fmt), fmt), photo)


@pytest.mark.parametrize("fmt", ["XBGR8888", "RGB888"])
def test_padded_rows_as_make_array_slices_them_convert_too(photo, fmt):
    """Picamera2 reshapes a buffer to its stride and slices off the padding: rows are not contiguous."""
    packed = fake_picamera2._encode(photo, fmt)
    padded = np.zeros((packed.shape[0], packed.shape[1] + 32, packed.shape[2]), np.uint8)
    padded[:, :packed.shape[1]] = packed
    view = padded[:, :packed.shape[1]]
    assert not view.flags.c_contiguous
    assert np.array_equal(packed_to_rgb(view, fmt), photo)


def test_a_padded_rgbx_frame_shows_the_same_overlay_and_picture_as_its_rgb_frame(photo):
    """A Pi frame keeps main's padded R, G, B, X rows as make_array gives them: the overlay (made from the hair's
    box of those pixels) and the whole RGB frame (made on demand) are those of the photo in RGB."""
    from device.cameras import Frame
    from device.recolour import make_recolourer
    from device.sinks import Output
    packed = fake_picamera2._encode(photo, "XBGR8888")
    padded = np.zeros((packed.shape[0], packed.shape[1] + 32, 4), np.uint8)
    padded[:, :packed.shape[1]] = packed
    pixels = stream_to_pixels(padded[:, :packed.shape[1]], "XBGR8888", (640, 480))
    assert pixels.shape == (480, 640, 4) and not pixels.flags.c_contiguous
    alpha = np.zeros((256, 256), np.float32)
    alpha[20:120, 60:200] = np.linspace(0.2, 1.0, 140, dtype=np.float32)
    recolourer = make_recolourer("hsv", "crimson")
    pi, rgb = Output(Frame(pixels, photo), alpha, recolourer), Output(Frame(photo, photo), alpha, recolourer)
    assert np.array_equal(pi.overlay, rgb.overlay) and pi.overlay[..., 3].max() > 200
    assert np.array_equal(pi.frame.main, photo) and np.array_equal(pi.composite, rgb.composite)


def test_a_packed_array_with_the_wrong_channel_count_is_a_camera_error(photo):
    with pytest.raises(CameraError, match="expected 4 channels"):
        packed_to_rgb(photo, "XBGR8888")
    with pytest.raises(CameraError, match="unsupported stream format"):
        packed_to_rgb(photo, "NV12")


def test_yuv420_plane_comes_back_as_rgb(photo):
    yuv = fake_picamera2._encode(photo, "YUV420")
    assert yuv.shape == (720, 640)
    rgb = yuv420_to_rgb(yuv, (640, 480))
    assert np.abs(rgb.astype(int) - photo).mean() < 4  # chroma subsampling only
    with pytest.raises(CameraError, match="YUV420 array has shape"):
        yuv420_to_rgb(yuv[:-10], (640, 480))


def test_yuv420_with_a_padded_stride_comes_back_as_rgb(photo):
    """Picamera2's make_array gives YUV420 as (H * 3 / 2, stride), padding kept (it only slices packed and NV12
    rows). A Pi's ISP pads rows to its alignment, so a lores width that is not a multiple of it (a 224-wide
    model, say) arrives wider than W."""
    w, h, stride = 224, 160, 256
    small = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    i420 = cv2.cvtColor(small, cv2.COLOR_RGB2YUV_I420)  # (h * 3 / 2, w): Y, then U, then V, unpadded
    y, u, v = i420[:h], i420[h:h + h // 4].reshape(h // 2, w // 2), i420[h + h // 4:].reshape(h // 2, w // 2)
    padded = np.zeros((h * 3 // 2, stride), np.uint8)  # how libcamera lays it out: chroma rows stride / 2 apart
    padded[:h, :w] = y
    for plane, row0 in ((u, h), (v, h + h // 4)):
        rows = np.zeros((h // 2, stride // 2), np.uint8)
        rows[:, :w // 2] = plane
        padded[row0:row0 + h // 4] = rows.reshape(h // 4, stride)
    rgb = yuv420_to_rgb(padded, (w, h))
    assert rgb.shape == (h, w, 3) and rgb.flags.c_contiguous
    assert np.abs(rgb.astype(int) - cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)).max() == 0
    with pytest.raises(CameraError, match="YUV420 array has shape"):
        yuv420_to_rgb(padded[:, :w - 2], (w, h))
    with pytest.raises(CameraError, match="YUV420 array has shape"):  # an odd stride has no whole chroma rows
        yuv420_to_rgb(padded[:, :w + 1], (w, h))


@pytest.mark.parametrize("fmt", ["XRGB8888", "RGB888", "BGR888", "YUV420"])
def test_only_rgbx_pixels_are_kept_as_they_come_every_other_format_is_made_rgb(photo, fmt):
    """stream_to_pixels keeps XBGR8888 ([R, G, B, X]) as it is; any other stream is R, G, B like stream_to_rgb."""
    pixels = stream_to_pixels(fake_picamera2._encode(photo, fmt), fmt, (640, 480))
    assert pixels.shape == (480, 640, 3) and np.abs(pixels.astype(int) - photo).mean() < 4


def test_a_lores_size_the_camera_aligns_comes_back_at_the_models_size(fake, photo):
    """Picamera2 aligns stream sizes (even sides, as the fake does): a 257x193 lores arrives as 256x192 and the
    frame's lores is that picture stretched back to the model's (H, W) = (193, 257), not transposed."""
    fake.scenes = [photo]
    cfg = CameraConfig(kind="picamera2", width=640, height=480, mirror=False)
    cam = CAMERAS.create("picamera2", cfg, (193, 257), preview="null")
    cam.start()
    try:
        assert cam.streams["lores"] == ("YUV420", (256, 192))
        lores = cam.read().lores
        assert lores.shape == (193, 257, 3)
        expected = cv2.resize(photo, (257, 193), interpolation=cv2.INTER_AREA)
        assert np.abs(lores.astype(int) - expected).mean() < 6
    finally:
        cam.stop()


def test_the_fake_starves_when_the_application_holds_every_buffer(fake, photo):
    """As libcamera does: with all buffer_count requests held, no new one completes (what makes the release test
    above able to fail)."""
    fake.scenes = [photo]
    cam = make()
    cam.start()
    picam2 = fake.instances[-1]
    held = [picam2.wait(picam2.capture_request(wait=False), timeout=0.1) for _ in range(4)]
    with pytest.raises(TimeoutError):
        picam2.wait(picam2.capture_request(wait=False), timeout=0.05)
    held[0].release()
    assert picam2.wait(picam2.capture_request(wait=False), timeout=0.1) is not None
    cam.stop()


def test_a_wrong_byte_order_would_swap_red_and_blue(photo):
    bgr = fake_picamera2._encode(photo, "RGB888")
    wrong = packed_to_rgb(bgr, "BGR888")  # as if RGB888 were taken literally
    assert np.abs(wrong.astype(int) - photo).mean() > 10


@pytest.mark.parametrize("platform,expected", [("VC4", "YUV420"), ("PISP", "RGB888")])
def test_lores_format_follows_the_pi_model(fake, photo, platform, expected):
    fake.scenes = [photo]
    fake.platform = fake_picamera2.Platform[platform]
    cam = make()
    cam.start()
    assert cam.streams["lores"] == (expected, (256, 256))
    assert cam.streams["main"] == ("XBGR8888", (640, 480))
    frame = cam.read()
    # main is handed over as it came (R, G, B, X): made RGB only when something asks for the whole frame
    assert frame.pixels.shape == (480, 640, 4) and frame.shape == (480, 640) and "main" not in vars(frame)
    assert frame.main.shape == (480, 640, 3) and frame.lores.shape == (256, 256, 3)
    assert np.array_equal(frame.main, frame.pixels[..., :3])
    # the same colours on both streams, whichever format carried them
    small = frame.main[::2, ::2].reshape(-1, 3).mean(0)
    assert np.abs(frame.lores.reshape(-1, 3).mean(0) - small).max() < 6
    assert np.abs(frame.main.astype(int) - photo).mean() < 1
    cam.stop()


def test_a_frames_lores_is_converted_once_when_it_is_read_after_the_request_is_released(fake, photo, monkeypatch):
    from device.cameras import picamera2 as adapter
    fake.scenes = [photo]
    converted = []
    real = adapter.lores_rgb
    monkeypatch.setattr(adapter, "lores_rgb", lambda *args: converted.append(1) or real(*args))
    cam = make()
    cam.start()
    frame = cam.read()
    assert not converted and fake.instances[-1].held == 0  # the buffers went back first; nothing converted yet
    assert frame.lores is frame.lores and len(converted) == 1
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA).reshape(-1, 3).mean(0)
    assert np.abs(frame.lores.reshape(-1, 3).mean(0) - small).max() < 6  # the YUV420 it was given, made RGB
    cam.stop()


def test_with_a_model_slower_than_the_camera_only_segmented_frames_are_converted_and_overlaid(fake, photo,
                                                                                            monkeypatch):
    """A Pi's camera outpaces its model: the frames the inference is too busy to take are shown, but their lores
    is never converted (the one that waits as the next is, by the frame thread), and an overlay is made (and handed
    to Picamera2) only for each new hair."""
    from device import config as configuration
    from device.cameras import picamera2 as adapter
    from device.mirror import Mirror
    from device.sinks import SINKS
    fake.scenes = [photo]
    converted = []
    real = adapter.lores_rgb
    monkeypatch.setattr(adapter, "lores_rgb",
                        lambda *args: converted.append(threading.current_thread().name) or real(*args))
    cfg = configuration.from_dict({"camera": {"kind": "demo", "fps": 60}, "sink": {"kind": "null"},
                                   "web": {"enabled": False}, "segmenter": {"kind": "classical"}})
    mirror = Mirror(cfg)
    cam = make(preview="drm")
    mirror.camera = mirror.capture.camera = cam
    mirror.sinks = [SINKS.create("picamera2-overlay", configuration.SinkConfig(kind="picamera2-overlay"), cam)]
    segment = mirror.segmenter.segment

    def slow(rgb):  # a model at a third of the camera's rate
        time.sleep(0.05)
        return segment(rgb)
    mirror.segmenter.segment = slow
    shown = mirror.run(max_frames=90)
    overlays = [o for o in fake.instances[-1].overlays if o is not None]
    assert shown == 90 and 3 <= mirror.inferences < shown  # some frames were shown without being segmented
    # by the inference, or by the frame thread for the frame offered in the running job's last frame interval, which
    # waits as the next one (a frame a newer one replaces is never converted)
    assert set(converted) <= {"inference", threading.current_thread().name}, converted
    assert mirror.inferences <= len(converted) <= mirror.inferences + 1
    assert len(overlays) <= mirror.inferences + 1  # each new hair once (and the clear one before the first)


def test_rgb_lores_on_a_pi4_is_refused_with_a_clear_error(fake, photo):
    fake.scenes = [photo]
    cam = make(lores_format="RGB888")
    with pytest.raises(CameraError, match="lores stream must be YUV"):
        cam.start()


def test_requests_are_released_so_capture_never_starves(fake, photo):
    fake.scenes = [photo]
    cam = make()
    cam.start()
    for _ in range(20):  # five times the buffer count
        cam.read()
    assert fake.instances[-1].held == 0
    cam.stop()
    assert fake.instances[-1].closed


def test_mirror_uses_the_sensor_transform_not_a_software_flip(fake, photo):
    fake.scenes = [photo]
    cam = make(mirror=True)
    cam.start()
    frame = cam.read()
    assert np.abs(frame.main.astype(int) - photo[:, ::-1]).mean() < 1


def test_no_camera_and_a_lost_camera_raise_camera_error(fake, photo):
    with pytest.raises(CameraError, match="cannot start"):
        make().start()
    fake.scenes, fake.fail_after = [photo], 2
    cam = make()
    cam.start()
    cam.read()
    cam.read()
    with pytest.raises(CameraError, match="no frame"):
        cam.read()


def test_missing_picamera2_package_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        make().start()


def test_a_picamera2_built_for_another_numpy_says_so_not_that_it_is_missing(monkeypatch, tmp_path):
    """Bookworm's picamera2 imports simplejpeg, compiled for numpy 1.x; with numpy 2 in the venv the import raises
    ValueError ("numpy.dtype size changed"), which escaped the camera's errors. A package that fails that way on
    import, found first on the path, as apt's is found through --system-site-packages."""
    import sys
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text('raise ValueError("numpy.dtype size changed, may indicate binary '
                                         'incompatibility. Expected 96 from C header, got 88 from PyObject")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(CameraError, match=r"picamera2 cannot be imported \(numpy.dtype size changed.*numpy<2"):
        make().start()


def test_a_missing_picamera2_module_is_warned_of_when_the_camera_is_built(monkeypatch, caplog):
    """Building the camera is what --validate-config does: it must say the module is missing (the start retries
    it forever), in one warning; with the module there, nothing."""
    import sys
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with caplog.at_level("WARNING", logger="device.cameras.picamera2"):
        make()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("camera.kind: picamera2, but the picamera2 module is not installed")
    assert "apt install python3-picamera2" in said[0] and "demo" in said[0]


def test_an_installed_picamera2_module_is_not_warned_of(fake, caplog):
    with caplog.at_level("WARNING", logger="device.cameras.picamera2"):
        make()
    assert caplog.records == []


def test_overlay_sink_puts_small_rgba_on_the_preview(fake, photo):
    from device.config import SinkConfig
    from device.recolour import make_recolourer
    from device.sinks import SINKS, Output
    fake.scenes = [photo]
    cam = make(preview="drm")
    cam.start()
    sink = SINKS.create("picamera2-overlay", SinkConfig(kind="picamera2-overlay"), cam)
    frame = cam.read()
    alpha = np.zeros((256, 256), np.float32)
    alpha[:80] = 1.0
    crimson = make_recolourer("hsv", "crimson")
    sink.show(Output(frame, alpha, crimson))
    overlay = fake.instances[-1].overlays[-1]
    assert overlay.dtype == np.uint8 and overlay.shape == (240, 320, 4)
    assert overlay[:70, :, 3].min() == 255 and overlay[100:, :, 3].max() == 0
    # the next frames with the same hair keep that overlay; new hair or a new colour make a new one
    sink.show(Output(cam.read(), alpha, crimson))
    assert len(fake.instances[-1].overlays) == 1
    sink.show(Output(cam.read(), alpha.copy(), crimson))
    sink.show(Output(cam.read(), alpha.copy(), make_recolourer("hsv", "gold")))
    sink.show(Output(cam.read(), None, crimson))
    assert len(fake.instances[-1].overlays) == 4 and fake.instances[-1].overlays[-1][..., 3].max() == 0
    sink.close()
    assert fake.instances[-1].overlays[-1] is None


def test_overlay_of_a_frame_narrower_than_320_keeps_its_size(photo):
    from device.cameras import Frame
    from device.recolour import make_recolourer
    from device.sinks import Output
    small = cv2.resize(photo, (256, 192), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((256, 256), np.float32)
    alpha[:128] = 1.0
    overlay = Output(Frame(small, cv2.resize(small, (256, 256))), alpha, make_recolourer("hsv", "crimson")).overlay
    assert overlay.shape == (192, 256, 4)  # not scaled up to 320 wide
    assert overlay[:90, :, 3].min() == 255 and overlay[100:, :, 3].max() == 0


def test_overlay_sink_needs_the_pi_camera():
    from device.config import SinkConfig
    from device.sinks import SINKS
    with pytest.raises(ValueError, match="needs camera.kind = 'picamera2'"):
        SINKS.create("picamera2-overlay", SinkConfig(), object())


def test_stream_to_rgb_rejects_unknown_formats(photo):
    with pytest.raises(CameraError, match="unsupported stream format"):
        stream_to_rgb(photo, "SBGGR10", (640, 480))

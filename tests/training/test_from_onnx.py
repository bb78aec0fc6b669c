"""An exported file's weights back into its PyTorch variant (`--init FILE.onnx`)."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from training.augment import stretch  # noqa: E402
from training.data import resolve  # noqa: E402
from training.from_onnx import OnnxImportError, load_onnx_weights  # noqa: E402
from training.models import build_model, normalise  # noqa: E402
from training.train import TrainConfig, load_checkpoint, train  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "hair-unet-226k.onnx"  # BatchNorms folded, uint8 input


@pytest.fixture(scope="module")
def photos(data_root):
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped file at {SHIPPED}")
    pairs = resolve("figaro-train", data_root)[:24]
    return np.stack([stretch(p.load()[0], (256, 256)) for p in pairs])


def test_the_rebuilt_model_computes_what_the_file_computes(photos):
    from device.model_file import load_model
    model = build_model("unet-226k")
    load_onnx_weights(model, SHIPPED, photos[:16])
    shipped = load_model(SHIPPED, threads=1).predict(photos[16:])[:, 0]
    x = normalise(torch.from_numpy(photos[16:]))
    with torch.no_grad():
        rebuilt = torch.sigmoid(model.eval()(x))[:, 0].numpy()
        training = torch.sigmoid(model.train()(x))[:, 0].numpy()  # BatchNorms on this batch's own statistics
    assert np.abs(rebuilt - shipped).max() < 1e-4
    assert ((training > 0.5) == (shipped > 0.5)).mean() > 0.85, "train mode starts near the file, not afresh"


def test_a_file_of_another_variant_is_refused(photos):
    with pytest.raises(OnnxImportError, match="convolutions"):
        load_onnx_weights(build_model("mobile-unet"), SHIPPED, photos[:4])


def test_init_from_an_onnx_file_starts_a_run_at_its_weights(tmp_path, data_root, photos):
    import onnx
    from onnx import numpy_helper
    cfg = TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=64, epochs=1,
                      batch=4, lr=1e-12, limit=8, augment="flips", init=str(SHIPPED), out=str(tmp_path / "run"))
    train(cfg, progress=False)
    model, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    head = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(SHIPPED)).graph.initializer}["net.head.weight"]
    assert np.allclose(model.head.weight.detach().numpy(), head, atol=1e-6)
    with pytest.raises(ValueError, match="without a prior input"):
        train(TrainConfig(**{**cfg.__dict__, "prior": True, "out": str(tmp_path / "prior")}), progress=False)


def test_an_init_onnx_that_is_not_one_is_named_not_a_decode_traceback(tmp_path, data_root, caplog):
    """A truncated or foreign .onnx was protobuf's DecodeError traceback; an empty one 'has 0 convolutions'."""
    from training.cli import main
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped file at {SHIPPED}")
    whole = SHIPPED.read_bytes()
    for name, content in (("cut.onnx", whole[:len(whole) // 2]), ("empty.onnx", b""), ("text.onnx", b"\xff" * 64)):
        bad = tmp_path / name
        bad.write_bytes(content)
        caplog.clear()
        assert main(["train", "--data", "fasseg-v2-train", "--data-root", str(data_root), "--limit", "4", "--batch",
                     "2", "--size", "32", "--epochs", "1", "--init", str(bad), "--out", str(tmp_path / f"run-{name}")]) == 2
        assert f"{bad}: not an ONNX model" in caplog.text, name

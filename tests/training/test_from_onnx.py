"""An exported file's weights back into its PyTorch variant (`--init FILE.onnx`)."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from training.augment import stretch  # noqa: E402
from training.data import resolve  # noqa: E402
from training.from_onnx import OnnxImportError, load_onnx_weights, onnx_convs  # noqa: E402
from training.models import build_model, normalise  # noqa: E402
from training.train import TrainConfig, load_checkpoint, train  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = MODELS / "hair-unet-226k.onnx"  # BatchNorms folded, uint8 input


@pytest.fixture(scope="module")
def figaro_images(data_root):
    return [p.load()[0] for p in resolve("figaro-train", data_root)[:24]]


@pytest.fixture(scope="module")
def photos(figaro_images):
    if not SHIPPED.is_file():
        pytest.skip(f"no shipped file at {SHIPPED}")
    return np.stack([stretch(img, (256, 256)) for img in figaro_images])


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


@pytest.mark.parametrize("name", ["hair-mobile-unet.onnx", "hair-mobile-unet-wide.onnx"])
def test_a_split_concat_file_loads_into_its_variant_and_computes_what_it_computes(name, figaro_images):
    """export's split-concat rewrite cuts each decoder merge's convolutions in two (34 of the 26 mobile-unet runs):
    joined back, the model computes the file's probabilities (onnxruntime's)."""
    import onnx
    import onnxruntime as ort
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"no shipped file at {path}")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "split-concat" in meta["export.optimised"]
    h, w = map(int, meta["input_size"].split(","))
    images = np.stack([stretch(img, (h, w)) for img in figaro_images[:12]])
    model = build_model(meta["variant"])
    load_onnx_weights(model, path, images[:8])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shipped = session.run(["hair"], {"image": images[8:]})[0][:, 0]
    with torch.no_grad():
        rebuilt = torch.sigmoid(model.eval()(normalise(torch.from_numpy(images[8:]))))[:, 0].numpy()
    assert np.abs(rebuilt - shipped).max() < 1e-4


def test_a_prior_input_file_is_refused_by_name(tmp_path, data_root, caplog):
    """Its first convolution reads 4 channels: numpy's broadcast error '(24,4,3,3) (1,3,1,1)' was all it said."""
    from training.cli import main
    prior_file = MODELS / "hair-mobile-unet-prior.onnx"
    if not prior_file.is_file():
        pytest.skip(f"no shipped file at {prior_file}")
    with pytest.raises(OnnxImportError, match="takes a prior input"):
        onnx_convs(prior_file)
    out = tmp_path / "run"
    assert main(["train", "--variant", "mobile-unet", "--data", "fasseg-v2-train", "--data-root", str(data_root),
                 "--limit", "4", "--batch", "2", "--size", "32", "--epochs", "1", "--init", str(prior_file),
                 "--out", str(out)]) == 2
    assert f"{prior_file} takes a prior input" in caplog.text
    assert not out.exists()


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

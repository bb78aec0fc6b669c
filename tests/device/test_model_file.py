"""The device's contract loader: a good file loads and runs; every kind of bad file is refused with its own message.

The model files are small ONNX graphs built here with the `onnx` package (no torch), each breaking the contract
in exactly one way, so a test fails if the loader accepts it or refuses it for another reason.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device.model_file import REQUIRED_METADATA, ModelContractError, load_model

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SIZE = (32, 48)  # H, W: not square, so a swapped size is caught
META = {"contract": "1", "variant": "test-graph", "params": "1", "macs": "0", "input_size": f"{SIZE[0]},{SIZE[1]}",
        "threshold": "0.5", "trained_on": "none"}


def contract_graph(*, image_type=TensorProto.UINT8, nhwc=True, output="hair", prior=False,
                   meta=None, size: tuple[int, int] = SIZE) -> onnx.ModelProto:
    """hair = sigmoid(scale * mean over RGB - offset [+ prior]): a stand-in with the contract's interface, its input
    `size` (H, W) (META's `input_size` is SIZE's: give `meta` for another)."""
    h, w = size
    image_shape = ["N", h, w, 3] if nhwc else ["N", 3, h, w]
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT)]
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", ["f"], ["nchw"]))
    nodes += [
        helper.make_node("ReduceMean", ["nchw"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["grey", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "offset"], ["logit0"]),
    ]
    inputs = [helper.make_tensor_value_info("image", image_type, image_shape)]
    if prior:
        nodes.append(helper.make_node("Add", ["logit0", "prior"], ["logit"]))
        inputs.append(helper.make_tensor_value_info("prior", TensorProto.FLOAT, ["N", 1, h, w]))
    else:
        nodes.append(helper.make_node("Identity", ["logit0"], ["logit"]))
    nodes.append(helper.make_node("Sigmoid", ["logit"], [output]))
    inits = [numpy_helper.from_array(np.array([8.0 / 255], np.float32), "scale"),
             numpy_helper.from_array(np.array([4.0], np.float32), "offset")]
    graph = helper.make_graph(nodes, "contract-test", inputs,
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 1, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (META if meta is None else meta).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path))
    return path


@pytest.fixture
def good(tmp_path) -> Path:
    return save(contract_graph(), tmp_path / "good.onnx")


def refusal(path: Path) -> str:
    with pytest.raises(ModelContractError) as info:
        load_model(path)
    assert str(path) in str(info.value) or path.name in str(info.value), "the message must name the file"
    return str(info.value)


def test_good_file_loads_and_runs_on_a_real_photo(good):
    photo = DATA / "figaro1k" / "Original" / "Testing" / "Frame00010-org.jpg"
    if not photo.is_file():
        pytest.skip(f"real data absent: {photo}")
    model = load_model(good, threads=1)
    assert model.input_size == SIZE and model.threshold == 0.5 and not model.has_prior
    assert model.metadata["variant"] == "test-graph" and model.path == good
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    frame = cv2.resize(rgb, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)
    batch = np.stack([frame, 255 - frame])  # dynamic batch axis: two frames at once
    hair = model.predict(batch)
    assert hair.dtype == np.float32 and hair.shape == (2, 1, *SIZE)
    assert 0.0 <= hair.min() and hair.max() <= 1.0
    expected = 1 / (1 + np.exp(-(batch.astype(np.float32).mean(-1) * 8.0 / 255 - 4.0)))
    np.testing.assert_allclose(hair[:, 0], expected, atol=1e-5)


def test_predict_checks_its_input(good):
    model = load_model(good)
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((1, *SIZE, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, 32, 48, 3\]"):
        model.predict(np.zeros((1, SIZE[1], SIZE[0], 3), np.uint8))
    with pytest.raises(ValueError, match="no 'prior' input"):
        model.predict(np.zeros((1, *SIZE, 3), np.uint8), prior=np.zeros((1, 1, *SIZE), np.float32))


def test_prior_input_is_optional_and_used(tmp_path):
    model = load_model(save(contract_graph(prior=True), tmp_path / "prior.onnx"))
    assert model.has_prior
    frame = np.full((1, *SIZE, 3), 128, np.uint8)
    first = model.predict(frame)  # a first frame: zeros are fed for the prior
    np.testing.assert_allclose(first, model.predict(frame, np.zeros((1, 1, *SIZE), np.float32)))
    assert (model.predict(frame, np.ones((1, 1, *SIZE), np.float32)) > first).all()
    with pytest.raises(ValueError, match="prior must be"):
        model.predict(frame, np.zeros((1, *SIZE), np.float32))


def resized_graph(channel_scale: float) -> onnx.ModelProto:
    """hair = sigmoid(Resize(image as NCHW, scales computed at run time)): nobody can tell the output's shape
    before running it (as after an upsampling whose size is computed in the graph)."""
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("ReduceMax", ["nchw"], ["peak"], keepdims=0),
             helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "scales"], ["runtime_scales"]),
             helper.make_node("Resize", ["nchw", "", "runtime_scales"], ["resized"], mode="nearest"),
             helper.make_node("Sigmoid", ["resized"], ["hair"])]
    inits = [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
             numpy_helper.from_array(np.array([1, channel_scale, 1, 1], np.float32), "scales")]
    graph = helper.make_graph(nodes, "resized", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                                               ["N", *SIZE, 3])],
                              [helper.make_tensor_value_info("hair", TensorProto.FLOAT, ["N", "c", "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in META.items():
        model.metadata_props.add(key=k, value=v)
    return model


def test_symbolic_output_shape_is_checked_by_a_run(tmp_path):
    ok = load_model(save(resized_graph(1 / 3), tmp_path / "one_map.onnx"))  # 3 channels resized to 1
    assert ok.predict(np.zeros((2, *SIZE, 3), np.uint8)).shape == (2, 1, *SIZE)
    msg = refusal(save(resized_graph(1.0), tmp_path / "three_maps.onnx"))
    assert "came out float32 [1, 3, 32, 48]" in msg


def test_missing_file(tmp_path):
    assert "model file not found" in refusal(tmp_path / "nowhere.onnx")


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(4096), b"PK\x03\x04 not a model, a zip header",
                                     b"hello, I am a text file\n" * 20, bytes(100)])
def test_not_onnx(tmp_path, content):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    assert "not an ONNX model" in refusal(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert "empty" in refusal(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated(tmp_path, good, keep):
    data = good.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * keep)])
    assert "truncated" in refusal(path)


def test_wrong_input_dtype(tmp_path):
    msg = refusal(save(contract_graph(image_type=TensorProto.FLOAT), tmp_path / "float.onnx"))
    assert "must be uint8" in msg and "tensor(float)" in msg


def test_wrong_input_layout(tmp_path):
    msg = refusal(save(contract_graph(nhwc=False), tmp_path / "nchw.onnx"))
    assert "layout [N, H, W, 3]" in msg


def test_float_nchw_export_is_named(tmp_path):
    msg = refusal(save(contract_graph(image_type=TensorProto.FLOAT, nhwc=False), tmp_path / "bare.onnx"))
    assert "must be uint8" in msg and "NCHW" in msg


def test_missing_hair_output(tmp_path):
    msg = refusal(save(contract_graph(output="mask"), tmp_path / "mask.onnx"))
    assert "no output named 'hair'" in msg and "mask" in msg


def test_wrong_contract_version(tmp_path):
    msg = refusal(save(contract_graph(meta={**META, "contract": "2"}), tmp_path / "v2.onnx"))
    assert "contract version '2'" in msg


def test_no_contract_metadata(tmp_path):
    msg = refusal(save(contract_graph(meta={k: v for k, v in META.items() if k != "contract"}), tmp_path / "x.onnx"))
    assert "no 'contract' metadata" in msg


@pytest.mark.parametrize("key", [k for k in REQUIRED_METADATA if k != "contract"])
def test_missing_required_metadata(tmp_path, key):
    msg = refusal(save(contract_graph(meta={k: v for k, v in META.items() if k != key}), tmp_path / "m.onnx"))
    assert f"required metadata missing: {key}" in msg


@pytest.mark.parametrize("key,value,words", [("input_size", "32x48", "must be 'H,W'"),
                                             ("input_size", "48,32", "metadata input_size says 48,32"),
                                             ("threshold", "half", "must be a number"),
                                             ("threshold", "1.5", "must lie in [0.01, 0.99]"),
                                             # each passed: "1e-300" dyed 98% of a photo, "0.9999999" nothing,
                                             # "0_5" was read as 5.0, "6_4,64" and other scripts' digits as 64
                                             ("threshold", "1e-300", "dyes almost everything or nothing"),
                                             ("threshold", "0.9999999", "dyes almost everything or nothing"),
                                             ("threshold", "0_5", "must be a number"),
                                             ("input_size", "3_2,48", "must be 'H,W'"),
                                             ("input_size", "\u0663\u0662,48", "must be 'H,W'"),
                                             ("input_size", "20000,20000", "each side must be 1..2048"),
                                             ("input_size", "0,32", "each side must be 1..2048"),
                                             ("input_size", "32,0", "each side must be 1..2048")])
def test_bad_metadata_values(tmp_path, key, value, words):
    assert words in refusal(save(contract_graph(meta={**META, key: value}), tmp_path / "bad.onnx"))


def _external(tmp_path) -> Path:
    path = tmp_path / "ext.onnx"
    onnx.save_model(contract_graph(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").is_file()
    return path


def test_external_data_file_absent(tmp_path):
    path = _external(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    msg = refusal(path)
    assert "external data file 'ext.onnx.data'" in msg and "absent" in msg


def test_external_data_present_still_breaks_the_contract(tmp_path):
    msg = refusal(_external(tmp_path))
    assert "self-contained" in msg and "absent" not in msg


def test_external_data_of_a_constant_or_inside_a_subgraph_breaks_the_contract_too(tmp_path):
    """Only the main graph's initializers were looked at: a Constant node's tensor, or a subgraph's initializer,
    kept in a .bin beside the file passed `export check` as self-contained."""
    from onnx.external_data_helper import convert_model_to_external_data
    model = contract_graph()
    graph = model.graph
    scale = next(i for i in graph.initializer if i.name == "scale")
    graph.node.insert(0, helper.make_node("Constant", [], ["scale"], value=scale))  # the scale as a Constant node
    graph.initializer.remove(scale)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="const.bin", size_threshold=0,
                                   convert_attribute=True)
    onnx.save_model(model, str(tmp_path / "const.onnx"))
    assert (tmp_path / "const.bin").is_file()
    assert "external data" in refusal(tmp_path / "const.onnx")

    then = helper.make_graph([helper.make_node("Identity", ["inner"], ["out_then"])], "then", [],
                             [helper.make_tensor_value_info("out_then", TensorProto.FLOAT, [1])],
                             [numpy_helper.from_array(np.array([1.0], np.float32), "inner")])
    other = helper.make_graph([helper.make_node("Identity", ["inner2"], ["out_else"])], "else", [],
                              [helper.make_tensor_value_info("out_else", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.array([0.0], np.float32), "inner2")])
    model = contract_graph()
    model.graph.node.extend([
        helper.make_node("Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True), "yes")),
        helper.make_node("If", ["yes"], ["unused"], then_branch=then, else_branch=other)])
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="sub.bin", size_threshold=0,
                                   convert_attribute=True)
    onnx.save_model(model, str(tmp_path / "sub.onnx"))
    assert "external data" in refusal(tmp_path / "sub.onnx")


def test_each_failure_has_its_own_message(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.onnx").write_bytes(np.random.default_rng(1).bytes(2048))
    ext = _external(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    files = [tmp_path / "absent.onnx", tmp_path / "junk.onnx", tmp_path / "cut.onnx", ext,
             save(contract_graph(image_type=TensorProto.FLOAT), tmp_path / "f.onnx"),
             save(contract_graph(nhwc=False), tmp_path / "l.onnx"),
             save(contract_graph(output="mask"), tmp_path / "o.onnx"),
             save(contract_graph(meta={**META, "contract": "7"}), tmp_path / "v.onnx"),
             save(contract_graph(meta={k: v for k, v in META.items() if k != "threshold"}), tmp_path / "t.onnx")]
    reasons = [refusal(f).replace(str(f), "FILE") for f in files]
    assert len(set(reasons)) == len(files), reasons


def output_graph(kind: str) -> onnx.ModelProto:
    """A file whose interface keeps the contract (every shape declared) but whose output breaks it when run:
    "nan" (a NaN weight), "0..255" (the grey level itself, no scaling), "logits" (no sigmoid), "ok" (in [0, 1])."""
    h, w = SIZE
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("ReduceMean", ["nchw"], ["grey"], axes=[1], keepdims=1)]
    weight = {"nan": np.nan, "0..255": 1.0, "logits": 8.0 / 255, "ok": 1.0 / 255}[kind]
    offset = 4.0 if kind == "logits" else 0.0
    nodes += [helper.make_node("Mul", ["grey", "weight"], ["scaled"]),
              helper.make_node("Sub", ["scaled", "offset"], ["hair"])]
    inits = [numpy_helper.from_array(np.array([weight], np.float32), "weight"),
             numpy_helper.from_array(np.array([offset], np.float32), "offset")]
    graph = helper.make_graph(nodes, f"output-{kind}",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", h, w, 3])],
                              [helper.make_tensor_value_info("hair", TensorProto.FLOAT, ["N", 1, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in META.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("kind,words", [("nan", "not finite"), ("0..255", "0..255 pixel values"),
                                        ("logits", "no sigmoid")])
def test_an_output_that_breaks_the_contract_when_run_is_refused(tmp_path, kind, words):
    """Every declared shape is right, so only running the model shows it would dye nothing or everything."""
    msg = refusal(save(output_graph(kind), tmp_path / "bad.onnx"))
    assert words in msg and "contract v1 needs probabilities in [0, 1]" in msg and "test frame" in msg


def test_the_load_check_runs_on_real_looking_values_and_accepts_a_model_in_range(tmp_path):
    from device.model_file import probe_frame
    frame = probe_frame(*SIZE)
    assert frame.shape == (1, *SIZE, 3) and frame.dtype == np.uint8
    assert {0, 128, 255} <= set(np.unique(frame)) and len(np.unique(frame.reshape(-1, 3), axis=0)) >= 5
    model = load_model(save(output_graph("ok"), tmp_path / "ok.onnx"))
    assert 0.0 <= model.predict(frame).min() and model.predict(frame).max() <= 1.0


def probe_passing_graph(bad: str) -> onnx.ModelProto:
    """`contract_graph`, but off the load's test frame (whose first pixel is mid-grey 128) its output breaks the
    contract, as a graph may on a real frame: "nan", "255" (x255), "negative" (-2), "transposed" ([N, 1, W, H]
    down the other branch)."""
    model = contract_graph()
    graph = model.graph
    graph.node[-1].output[0] = "good"
    h, w = SIZE
    nodes = [helper.make_node("Slice", ["image", "zero4", "one4"], ["first"]),
             helper.make_node("Cast", ["first"], ["first_f"], to=TensorProto.FLOAT),
             helper.make_node("Equal", ["first_f", "grey128"], ["on_probe"])]
    inits = [numpy_helper.from_array(np.zeros(4, np.int64), "zero4"),
             numpy_helper.from_array(np.ones(4, np.int64), "one4"),
             numpy_helper.from_array(np.array([128.0], np.float32), "grey128")]
    if bad == "transposed":
        nodes += [helper.make_node("Reshape", ["on_probe", "one"], ["on_probe1"]),
                  helper.make_node("Shape", ["good"], ["shape_good"]),
                  helper.make_node("Concat", ["batch_1", "wh"], ["shape_bad"], axis=0),
                  helper.make_node("Where", ["on_probe1", "shape_good", "shape_bad"], ["shape"]),
                  helper.make_node("Reshape", ["good", "shape"], ["hair"])]
        inits += [numpy_helper.from_array(np.array([1], np.int64), "one"),
                  numpy_helper.from_array(np.array([1, 1], np.int64), "batch_1"),
                  numpy_helper.from_array(np.array([w, h], np.int64), "wh")]
    else:
        op, value = {"nan": ("Mul", np.nan), "255": ("Mul", 255.0), "negative": ("Sub", 2.0)}[bad]
        nodes += [helper.make_node(op, ["good", "bad_value"], ["broken"]),
                  helper.make_node("Where", ["on_probe", "good", "broken"], ["hair"])]
        inits += [numpy_helper.from_array(np.array([value], np.float32), "bad_value")]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    onnx.checker.check_model(model, full_check=True)
    return model


def real_frame() -> np.ndarray:
    photo = DATA / "figaro1k" / "Original" / "Testing" / "Frame00010-org.jpg"
    if not photo.is_file():
        pytest.skip(f"real data absent: {photo}")
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB), (SIZE[1], SIZE[0]))
    assert rgb[0, 0, 0] != 128
    return rgb


@pytest.mark.parametrize("bad,words", [("nan", "not finite"), ("255", "0..255 pixel values"),
                                       ("negative", "no sigmoid"), ("transposed", f"[1, 1, {SIZE[1]}, {SIZE[0]}]")])
def test_an_output_that_breaks_the_contract_on_a_real_frame_is_refused_there(tmp_path, bad, words):
    """Each passed the load's test frame and then, on real frames, dyed nothing (NaN, negative), everything (x255)
    or crashed the frame loop (another shape); every run is checked now, so the segmenter fails and falls back."""
    model = load_model(save(probe_passing_graph(bad), tmp_path / "bad.onnx"))
    with pytest.raises(ModelContractError, match=re.escape(words)) as info:
        model.predict(real_frame()[None])
    assert "bad.onnx" in str(info.value)


def test_a_constant_output_is_refused(tmp_path):
    """hair = 1 everywhere (or 0) passed: it dyed every pixel of every frame."""
    model = contract_graph()
    for init in model.graph.initializer:
        if init.name == "scale":
            init.CopyFrom(numpy_helper.from_array(np.array([0.0], np.float32), "scale"))
    assert "everywhere on one mid-grey" in refusal(save(model, tmp_path / "constant.onnx"))


def test_unreadable_metadata_a_symlink_loop_and_a_huge_file_are_refused_by_name(tmp_path):
    """Metadata that is not UTF-8 stopped the daemon at start (exit 2, no fallback, the file not named); a symlink
    loop was 'not found' (a usage error); a 3 GB file was read whole before any check (MemoryError on a Pi)."""
    raw = contract_graph(meta={**META, "variant": "VARIANTXX"}).SerializeToString()
    (tmp_path / "latin1.onnx").write_bytes(raw.replace(b"VARIANTXX", b"VARIANT\xff\xfe"))
    assert "not readable text" in refusal(tmp_path / "latin1.onnx")
    (tmp_path / "loop.onnx").symlink_to(tmp_path / "loop.onnx")
    msg = refusal(tmp_path / "loop.onnx")
    assert "cannot reach the model file" in msg and "not found" not in msg
    with (tmp_path / "huge.onnx").open("wb") as f:
        f.truncate(600 << 20)  # sparse: no disk used
    assert "larger than any hair model" in refusal(tmp_path / "huge.onnx")


def test_a_file_with_a_fixed_batch_runs_batches_of_any_size(tmp_path):
    """The contract lets N be fixed; `export eval` sent batches of 8 to a file fixed at N = 1 and died in
    onnxruntime. The batch now goes through in the file's own size."""
    model = contract_graph()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = load_model(save(model, tmp_path / "n1.onnx"))
    assert fixed.batch == 1
    frames = np.stack([real_frame(), 255 - real_frame(), real_frame()[::-1].copy()])
    together = fixed.predict(frames)
    assert together.shape == (3, 1, *SIZE)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(together[i], fixed.predict(frame[None])[0])

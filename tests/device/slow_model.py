"""A contract-v1 model that is slow on purpose, for the stop tests: fast on the load check's probe frame, slow on
a dark camera frame.

hair = sigmoid(8/255 * grey - 4) + 0 * sum(loop result), where the Loop runs MatMul + Tanh on a 256x256 matrix
`trips` times, trips = |pixel[0, 0, 0] - 128| * TRIPS_PER_LEVEL. The probe frame's first pixel is mid-grey (128):
no work; a black frame (0) runs 128 * TRIPS_PER_LEVEL MatMuls inside onnxruntime, the case where a stop used to
end in SIGABRT (a daemon thread still inside onnxruntime when the interpreter finalised).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .test_model_file import META, SIZE

SIDE = 256


def slow_graph(trips_per_level: int) -> onnx.ModelProto:
    h, w = SIZE
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["v_in", "weights"], ["product"]),
         helper.make_node("Tanh", ["product"], ["v_out"])],
        "slow-body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [SIDE, SIDE])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [SIDE, SIDE])])
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f", "flat_shape"], ["flat"]),
        helper.make_node("Gather", ["flat", "zero"], ["first"], axis=0),
        helper.make_node("Sub", ["first", "mid"], ["offset_from_mid"]),
        helper.make_node("Abs", ["offset_from_mid"], ["distance"]),
        helper.make_node("Mul", ["distance", "per_level"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "v0"], ["v_final"], body=body),
        helper.make_node("ReduceSum", ["v_final"], ["work"], keepdims=0),
        helper.make_node("Mul", ["work", "nothing"], ["no_effect"]),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["nchw"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["grey", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "offset"], ["logit0"]),
        helper.make_node("Add", ["logit0", "no_effect"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["hair"]),
    ]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, name) for name, a in [
        ("flat_shape", np.array([-1], np.int64)), ("zero", np.array(0, np.int64)),
        ("mid", np.array(128.0, np.float32)), ("per_level", np.array(float(trips_per_level), np.float32)),
        ("true", np.array(True)), ("v0", rng.standard_normal((SIDE, SIDE)).astype(np.float32)),
        ("weights", (rng.standard_normal((SIDE, SIDE)) / SIDE ** 0.5).astype(np.float32)),
        ("nothing", np.array(0.0, np.float32)),
        ("scale", np.array([8.0 / 255], np.float32)), ("offset", np.array([4.0], np.float32))]]
    graph = helper.make_graph(nodes, "slow-contract-test",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", h, w, 3])],
                              [helper.make_tensor_value_info("hair", TensorProto.FLOAT, ["N", 1, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (META | {"variant": "slow-test-graph"}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_slow_model(path: Path, trips_per_level: int = 400) -> Path:
    onnx.save_model(slow_graph(trips_per_level), str(path))
    return path

#!/usr/bin/env python3
"""Writes extra ONNX node tests, in the layout of ONNX's own, where ONNX's set is thin.

Each case is a folder `compiler/tests/onnx/flint_<name>/` with `model.onnx` and
`test_data_set_0/{input,output}_<i>.pb`; `compiler/tests/onnx_import.rs` runs them with the
copied ONNX node tests beside them. The expected outputs come from ONNX's reference
implementation (`onnx.reference.ReferenceEvaluator`), the same oracle as ONNX's node tests.

ONNX's GridSample tests keep the grid near [-1, 1] and try cubic only with zero padding;
these add grids far outside it (reflections folding several times), cubic with border and
reflection padding, a 1-D and a 3-D cubic case, and a symbolic batch.

Run: `python3 scripts/gen_onnx_cases.py` (needs `pip install onnx numpy`). Fixed seed.
"""

import os
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compiler", "tests", "onnx")


def write_case(name, graph, inputs, opset=22):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    outputs = ReferenceEvaluator(model).run(None, dict(zip([i.name for i in model.graph.input], inputs)))
    case = os.path.join(OUT, f"flint_{name}")
    data = os.path.join(case, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    onnx.save(model, os.path.join(case, "model.onnx"))
    for kind, values in (("input", inputs), ("output", outputs)):
        for i, v in enumerate(values):
            with open(os.path.join(data, f"{kind}_{i}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(np.asarray(v)).SerializeToString())
    print("wrote", case)


def grid_sample(name, x_shape, grid_shape, spread, batch="N", **attrs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(x_shape).astype(np.float32)
    grid = (rng.uniform(-spread, spread, grid_shape)).astype(np.float32)
    dims = lambda shape: [batch] + list(shape[1:])
    node = helper.make_node("GridSample", ["X", "grid"], ["Y"], **attrs)
    y_shape = [batch, x_shape[1]] + list(grid_shape[1:-1])
    graph = helper.make_graph(
        [node],
        name,
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, dims(x_shape)),
            helper.make_tensor_value_info("grid", TensorProto.FLOAT, dims(grid_shape)),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)],
    )
    write_case(name, graph, [x, grid])


def col2im(name, x_shape, image_shape, block_shape, batch="N", **attrs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(x_shape).astype(np.float32)
    consts = [
        numpy_helper.from_array(np.array(image_shape, dtype=np.int64), "image_shape"),
        numpy_helper.from_array(np.array(block_shape, dtype=np.int64), "block_shape"),
    ]
    node = helper.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["y"], **attrs)
    channels = x_shape[1] // int(np.prod(block_shape))
    graph = helper.make_graph(
        [node],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch] + list(x_shape[1:]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels] + list(image_shape))],
        initializer=consts,
    )
    write_case(name, graph, [x])


def tensor_scatter(name, cache_shape, update_shape, writes, batch="N", **attrs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    cache = rng.standard_normal(cache_shape).astype(np.float32)
    update = rng.standard_normal(update_shape).astype(np.float32)
    node = helper.make_node("TensorScatter", ["cache", "update", "writes"], ["present"], **attrs)
    graph = helper.make_graph(
        [node],
        name,
        [
            helper.make_tensor_value_info("cache", TensorProto.FLOAT, [batch] + list(cache_shape[1:])),
            helper.make_tensor_value_info("update", TensorProto.FLOAT, [batch] + list(update_shape[1:])),
            helper.make_tensor_value_info("writes", TensorProto.INT64, [batch]),
        ],
        [helper.make_tensor_value_info("present", TensorProto.FLOAT, [batch] + list(cache_shape[1:]))],
    )
    write_case(name, graph, [cache, update, np.array(writes, dtype=np.int64)], opset=24)


def max_pool_indices(name, x_shape, **attrs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    # Few distinct values, so windows hold ties and the first maximum must win.
    x = rng.integers(-3, 4, x_shape).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "indices"], **attrs)
    graph = helper.make_graph(
        [node],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(x_shape)),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [None] * len(x_shape)),
        ],
    )
    write_case(name, graph, [x])


def log_mel_spectrogram():
    """An audio front end: a Hann-windowed STFT, its power, a mel filter bank and a log."""
    name = "log_mel_spectrogram"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    t = np.arange(400) / 8000.0
    signal = (np.sin(2 * np.pi * 440 * t) + 0.3 * rng.standard_normal((2, 400))).astype(np.float32)[..., None]
    ints = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.int64), n)
    floats = lambda n, v: numpy_helper.from_array(np.array(v, dtype=np.float32), n)
    consts = [ints("step", 40), ints("frame", 64), ints("mels", 12), ints("rate", 8000), floats("low", 20.0), floats("high", 4000.0), ints("last", [-1]), floats("eps", 1e-6)]
    nodes = [
        helper.make_node("HannWindow", ["frame"], ["window"]),
        helper.make_node("STFT", ["signal", "step", "window", "frame"], ["spectrum"]),
        helper.make_node("Mul", ["spectrum", "spectrum"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "last"], ["power"], keepdims=0),
        helper.make_node("MelWeightMatrix", ["mels", "frame", "rate", "low", "high"], ["bank"]),
        helper.make_node("MatMul", ["power", "bank"], ["mel"]),
        helper.make_node("Add", ["mel", "eps"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["log_mel"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, [2, 400, 1])],
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, [2, 9, 12])],
        initializer=consts,
    )
    write_case(name, graph, [signal])


def roi_align(name, **attrs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    # Regions inside, across the border and outside the image (in input pixels / scale).
    rois = np.array([[2, 3, 15, 12], [-6, -4, 8, 5], [10, 14, 30, 26], [0, 0, 1, 1]], dtype=np.float32)
    batch = np.array([1, 0, 1, 0], dtype=np.int64)
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        name,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 11]),
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["R", 4]),
            helper.make_tensor_value_info("batch", TensorProto.INT64, ["R"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["R", 3, attrs["output_height"], attrs["output_width"]])],
    )
    write_case(name, graph, [x, rois, batch])


def det():
    """Matrices that need pivoting: a zero leading entry, a singular one, a permutation."""
    name = "det_pivoting"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0
    x[0, 1, 3] = x[0, 1, 1]
    x[0, 2] = np.eye(5, dtype=np.float32)[[3, 0, 4, 1, 2]]
    x[1, 3, :, 0] = 0.0
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["d"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 5, 5])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, ["B", 4])],
    )
    write_case(name, graph, [x])


def deform_conv():
    """Groups and offset groups together, strides, dilations, uneven pads, a mask, a bias, and
    offsets large enough to sample outside the image."""
    name = "deform_conv_groups_strided"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, c, h, w, m, kh, kw = 2, 4, 7, 8, 6, 2, 3
    attrs = dict(group=2, offset_group=2, strides=[2, 1], dilations=[1, 2], pads=[1, 2, 0, 1])
    oh = (h + 1 + 0 - (kh - 1) - 1) // 2 + 1
    ow = (w + 2 + 1 - 2 * (kw - 1) - 1) // 1 + 1
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((m, c // 2, kh, kw)).astype(np.float32)
    offset = (2.5 * rng.standard_normal((n, 2 * kh * kw * 2, oh, ow))).astype(np.float32)
    bias = rng.standard_normal((m,)).astype(np.float32)
    mask = rng.uniform(0, 1, (n, 2 * kh * kw, oh, ow)).astype(np.float32)
    info = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
    graph = helper.make_graph(
        [helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], **attrs)],
        name,
        [info("x", x.shape), info("w", weight.shape), info("offset", offset.shape), info("b", bias.shape), info("mask", mask.shape)],
        [info("y", (n, m, oh, ow))],
    )
    write_case(name, graph, [x, weight, offset, bias, mask])


def main():
    grid_sample("gridsample_cubic_reflection_far", (2, 2, 5, 4), (2, 6, 3, 2), 4.0, mode="cubic", padding_mode="reflection")
    grid_sample(
        "gridsample_cubic_border_aligned",
        (1, 3, 4, 6),
        (1, 5, 5, 2),
        1.6,
        mode="cubic",
        padding_mode="border",
        align_corners=1,
    )
    grid_sample(
        "gridsample_linear_reflection_aligned_far",
        (2, 1, 3, 7),
        (2, 4, 4, 2),
        5.0,
        mode="linear",
        padding_mode="reflection",
        align_corners=1,
    )
    grid_sample("gridsample_nearest_reflection_far", (1, 2, 4, 5), (1, 3, 7, 2), 3.0, mode="nearest", padding_mode="reflection")
    grid_sample("gridsample_linear_1d_border", (2, 3, 6), (2, 9, 1), 1.5, mode="linear", padding_mode="border")
    # 2 channels, 3x2 kernel, image 7x9 padded (1, 2 / 0, 1), stride (2, 3), dilation (2, 1):
    # blocks (10 - 5) // 2 + 1 = 3 by (10 - 2) // 3 + 1 = 3; the last row and two columns of
    # the padded image are never covered.
    col2im("col2im_strided_dilated_padded", (2, 12, 9), [7, 9], [3, 2], pads=[1, 0, 2, 1], strides=[2, 3], dilations=[2, 1])
    col2im("col2im_1d", (3, 8, 5), [8], [4], strides=[1])
    # A [B, heads, max_seq, head_dim] cache; the writes wrap around the end.
    tensor_scatter("tensorscatter_4d_circular_wrap", (3, 2, 6, 4), (3, 2, 3, 4), [5, 0, 4], mode="circular")
    tensor_scatter("tensorscatter_axis1_linear", (2, 7, 3), (2, 2, 3), [5, 1], axis=1)
    max_pool_indices("maxpool_indices_ties_padded", (2, 3, 6, 7), kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])
    # No storage_order=1 case: the reference evaluator ignores it on some paths (row-major
    # indices); ONNX's own test_maxpool_with_argmax_2d_precomputed_strides covers it.
    max_pool_indices("maxpool_indices_3d_dilated", (1, 2, 5, 5, 6), kernel_shape=[2, 2, 2], dilations=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1])
    log_mel_spectrogram()
    deform_conv()
    det()
    roi_align("roialign_avg_scaled", output_height=3, output_width=4, sampling_ratio=3, spatial_scale=0.5)
    roi_align(
        "roialign_max_output_half_pixel",
        output_height=2,
        output_width=3,
        sampling_ratio=2,
        spatial_scale=0.5,
        mode="max",
        coordinate_transformation_mode="output_half_pixel",
    )
    grid_sample("gridsample_cubic_3d_zeros", (1, 2, 3, 4, 5), (1, 2, 3, 2, 3), 1.2, mode="cubic", padding_mode="zeros")


if __name__ == "__main__":
    main()

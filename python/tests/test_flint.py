"""The `flint` package: compile, load, run on NumPy arrays, errors as exceptions, and an ONNX
model matched against ONNX Runtime's outputs (recorded by examples/onnx/export.py)."""

import pathlib
import threading

import numpy as np
import pytest

import flint

ROOT = pathlib.Path(__file__).resolve().parents[2]
ONNX = ROOT / "examples" / "onnx"

SMALL = """graph small(x: f32[N<=8, 16]) -> (y: f32[N, 4]) {
    param w: f32[16, 4]
    y = softmax(x @ w, axis=-1)
}
"""


@pytest.fixture(scope="module")
def mlp():
    return flint.compile(str(ONNX / "mlp.onnx"), dim_bounds={"batch": 64})


def test_an_onnx_model_matches_onnx_runtime(mlp):
    x = np.load(ONNX / "mlp_input.npy")
    expected = np.load(ONNX / "mlp_expected.npy")
    out = mlp.session().run({"x": x})
    assert list(out) == ["probs"]
    assert out["probs"].dtype == np.float32 and out["probs"].shape == expected.shape
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-4, atol=1e-6)


def test_signature_names_symbolic_dims(mlp):
    assert mlp.inputs == {"x": ("f32", ["batch", 64])}
    assert mlp.outputs["probs"] == ("f32", ["batch", 10])
    assert mlp.symbols == {"batch": 64}
    assert "x: f32" in repr(mlp)


def test_inputs_are_converted_when_they_must_be(mlp):
    x = np.load(ONNX / "mlp_input.npy")
    # A C-contiguous array of the input's dtype goes to the runtime as it is.
    assert flint._as_input(x, "f32") is x
    session = mlp.session()
    want = session.run({"x": x})["probs"]
    # Fortran order and float64 are converted first; the results are the same.
    np.testing.assert_allclose(session.run({"x": np.asfortranarray(x)})["probs"], want, rtol=0, atol=0)
    np.testing.assert_allclose(session.run({"x": x.astype(np.float64)})["probs"], want, rtol=0, atol=0)


def test_source_with_weights_and_an_artifact_file(tmp_path):
    import struct, json

    w = (np.arange(64, dtype=np.float32).reshape(16, 4) - 32) / 64
    header = json.dumps({"w": {"dtype": "F32", "shape": [16, 4], "data_offsets": [0, w.nbytes]}}).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + w.tobytes())
    artifact = tmp_path / "small.tgx"
    model = flint.compile(SMALL, output=str(artifact), weights=str(path))
    x = np.linspace(-1, 1, 3 * 16, dtype=np.float32).reshape(3, 16)
    y = model.session().run({"x": x})["y"]
    logits = x @ w
    want = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(y, want / want.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    loaded = flint.load(str(artifact), weights=str(path))
    np.testing.assert_array_equal(loaded.session().run({"x": x})["y"], y)


def test_errors_are_exceptions_with_the_runtime_message(mlp, tmp_path):
    session = mlp.session()
    with pytest.raises(flint.FlintError, match="has shape \\[2, 65\\]"):
        session.run({"x": np.zeros((2, 65), np.float32)})
    with pytest.raises(flint.FlintError, match="no input `y`"):
        session.run({"y": np.zeros((2, 64), np.float32)})
    with pytest.raises(flint.FlintError, match="missing"):
        session.run({})
    with pytest.raises(flint.FlintError, match="outside 1..=64"):
        session.run({"x": np.zeros((65, 64), np.float32)})
    with pytest.raises(flint.FlintError, match="not a Flint artifact"):
        bad = tmp_path / "bad.tgx"
        bad.write_bytes(b"nonsense")
        flint.load(str(bad))
    with pytest.raises(flint.FlintError, match="1:"):
        flint.compile("graph g(x: f32[4]) -> (y: f32[4]) { y = nope(x) }")
    # Without a CUDA driver or device, asking for one is an error that says so; with one, the
    # model loads there.
    try:
        flint.compile(SMALL, device="cuda")
    except flint.FlintError as e:
        assert "CUDA" in str(e), str(e)
    with pytest.raises(flint.FlintError, match="give unified, discrete or host"):
        flint.compile(SMALL, memory="shared")
    with pytest.raises(flint.FlintError, match="give cpu, cuda or cuda:N"):
        flint.compile(SMALL, device="gpu")
    try:
        flint.compile(SMALL, target="sm_121", device="cuda", memory="host")
    except flint.FlintError as e:
        assert "CUDA" in str(e) or "PTX" in str(e), str(e)


def test_sessions_run_on_threads(mlp):
    x = np.load(ONNX / "mlp_input.npy")
    want = mlp.session().run({"x": x})["probs"]
    results = []

    def work():
        s = mlp.session()
        for _ in range(10):
            results.append(s.run({"x": x})["probs"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for r in results:
        np.testing.assert_array_equal(r, want)

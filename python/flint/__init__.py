"""Flint for Python: compile a model (Flint source or ONNX) and run it on NumPy arrays.

    import flint, numpy as np
    model = flint.compile("examples/onnx/mlp.onnx", dim_bounds={"batch": 64})
    out = model.session().run({"x": np.ones((2, 64), np.float32)})
    print(out["probs"].shape)

`flint.load("model.tgx")` loads an artifact that `flint compile` wrote. Inputs are read in
place when they are C-contiguous and of the input's dtype (anything else is converted first);
outputs are new arrays. Errors raise `flint.FlintError` with the runtime's message.
"""

from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _native
from ._native import FlintError

__all__ = ["compile", "load", "Model", "Session", "FlintError", "__version__"]
__version__ = _native.__version__

_NUMPY = {"f32": np.float32, "f16": np.float16, "i32": np.int32, "i64": np.int64, "bool": np.bool_}


def _as_input(value, dtype: str) -> np.ndarray:
    """The array the runtime reads: `value` itself when it already fits (no copy)."""
    if dtype == "bf16":
        # NumPy has no bfloat16: a float array is rounded to bf16 (nearest even), a uint16
        # array is taken as bf16 bits.
        a = np.asarray(value)
        if a.dtype != np.uint16:
            bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
            a = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(value, dtype=_NUMPY[dtype])


def _as_output(dtype: str, shape: List[int], data: np.ndarray) -> np.ndarray:
    if dtype == "bf16":
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return data.view(_NUMPY[dtype]).reshape(shape)


class Session:
    """A model's working memory: runs one at a time (make one per thread)."""

    def __init__(self, native):
        self._native = native

    def run(self, inputs: Mapping[str, object], dims: Optional[Mapping[str, int]] = None) -> Dict[str, np.ndarray]:
        """Runs the model on `inputs` (name -> array); symbolic dims come from the inputs'
        shapes, or from `dims`. Returns the outputs by name, in signature order."""
        types = self._types
        arrays = []
        for name, value in inputs.items():
            if name not in types:
                raise FlintError(f"the model has no input `{name}` (its inputs: {', '.join(types) or 'none'})")
            arrays.append((name, _as_input(value, types[name]), types[name]))
        outputs = self._native.run(arrays, list((dims or {}).items()))
        return {name: _as_output(dtype, shape, data) for name, dtype, shape, data in outputs}

    @property
    def copied_bytes(self) -> int:
        """Bytes the last run copied between host and device (0 on the CPU)."""
        return self._native.copied_bytes()


class Model:
    """A loaded artifact: its signature, and sessions that run it."""

    def __init__(self, native):
        self._native = native
        self.signature: List[Tuple[str, str, str, List[Union[int, str]]]] = native.signature()
        """`(kind, name, dtype, shape)` for every input, param and output."""
        self.symbols: Dict[str, int] = dict(native.symbols())
        """Each symbolic dim's name and upper bound."""

    def _of(self, kind: str) -> Dict[str, Tuple[str, List[Union[int, str]]]]:
        return {name: (dtype, shape) for k, name, dtype, shape in self.signature if k == kind}

    @property
    def inputs(self) -> Dict[str, Tuple[str, List[Union[int, str]]]]:
        """Input name -> (dtype, shape); symbolic axes are strings such as `"N"`."""
        return self._of("input")

    @property
    def outputs(self) -> Dict[str, Tuple[str, List[Union[int, str]]]]:
        return self._of("output")

    @property
    def params(self) -> Dict[str, Tuple[str, List[Union[int, str]]]]:
        return self._of("param")

    def session(self) -> Session:
        s = Session(self._native.session())
        s._types = {name: dtype for name, (dtype, _) in self.inputs.items()}
        return s

    def __repr__(self) -> str:
        def fmt(d):
            return ", ".join(f"{n}: {t}{list(s)}" for n, (t, s) in d.items())

        return f"flint.Model(({fmt(self.inputs)}) -> ({fmt(self.outputs)}))"


def load(
    path: str,
    weights: Optional[str] = None,
    device: str = "cpu",
    threads: int = 0,
    memory: Optional[str] = None,
) -> Model:
    """Loads a `.tgx` artifact; `weights` (a safetensors file) binds its params; `device` is
    `cpu`, `cuda` or `cuda:N`; `threads` 0 means every core; `memory` is how a CUDA device
    reaches host memory: `unified`, `discrete` or `host` (default: from the device)."""
    return Model(_native.load(str(path), weights, device, threads, memory))


def compile(
    source: str,
    target: str = "cpu",
    dim_bounds: Optional[Mapping[str, int]] = None,
    output: Optional[str] = None,
    weights: Optional[str] = None,
    device: str = "cpu",
    threads: int = 0,
    memory: Optional[str] = None,
) -> Model:
    """Compiles Flint source text, a `.tg` file or an `.onnx` model (whose weights are
    embedded) for `target` (`cpu`, or GPU SMs like `"sm_90,sm_121"` beside the CPU code),
    writes the artifact to `output` when given, and returns it loaded as `load` would.
    `dim_bounds` bounds an ONNX model's symbolic dims (`{"batch": 64}`)."""
    native = _native.compile(
        str(source), target, list((dim_bounds or {}).items()), output, weights, device, threads, memory
    )
    return Model(native)

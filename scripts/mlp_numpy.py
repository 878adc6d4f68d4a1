#!/usr/bin/env python3
"""NumPy reference for examples/mlp.tg: probs = softmax(relu(x @ w1 + b1) @ w2 + b2).

Usage: mlp_numpy.py WEIGHTS.safetensors X.npy OUT.npy

Reads the safetensors file with NumPy alone (8-byte little-endian header length, a JSON
header, raw little-endian data), computes in float64, and writes float32 probabilities.
The CLI test compares `flint eval` against this.
"""

import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name] = arr.astype(np.float64)
    return out


def main():
    weights_path, x_path, out_path = sys.argv[1:4]
    w = read_safetensors(weights_path)
    x = np.load(x_path).astype(np.float64)
    h = np.maximum(x @ w["w1"] + w["b1"], 0.0)
    logits = h @ w["w2"] + w["b2"]
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    np.save(out_path, (e / e.sum(axis=-1, keepdims=True)).astype(np.float32))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compares the .npy files of two folders element by element (standard library only, so it
runs on a bare machine): `|a - b| <= 1e-5 + 1e-4 * |a|`, NaN matching NaN. Exits 1 on the first
file that differs, printing where."""
import ast
import math
import os
import struct
import sys

FORMATS = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "|b1": "?", "<f2": "e", "|u1": "B"}


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    major = data[6]
    header_len = struct.unpack("<H" if major == 1 else "<I", data[8:10] if major == 1 else data[8:12])[0]
    start = (10 if major == 1 else 12) + header_len
    header = ast.literal_eval(data[(10 if major == 1 else 12):start].decode("latin1"))
    descr = header["descr"]
    if descr == "<u2":  # bf16 stored as raw 16-bit words: widen to f32
        words = struct.unpack(f"<{(len(data) - start) // 2}H", data[start:])
        return [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
    code = FORMATS[descr]
    count = (len(data) - start) // struct.calcsize(code)
    return list(struct.unpack(f"<{count}{code}", data[start:start + count * struct.calcsize(code)]))


def main(a_dir, b_dir):
    for name in sorted(os.listdir(a_dir)):
        if not name.endswith(".npy"):
            continue
        a, b = read(os.path.join(a_dir, name)), read(os.path.join(b_dir, name))
        if len(a) != len(b):
            print(f"{name}: {len(a)} vs {len(b)} elements")
            return 1
        for i, (x, y) in enumerate(zip(a, b)):
            x, y = float(x), float(y)
            if math.isnan(x) and math.isnan(y):
                continue
            if x != y and not abs(x - y) <= 1e-5 + 1e-4 * abs(x):
                print(f"{name}: element {i}: {x} vs {y}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

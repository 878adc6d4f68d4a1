#!/usr/bin/env python3
"""Compares the .npy files of two folders element by element (standard library only, so it
runs on a bare machine): `|a - b| <= atol + rtol * |a|`, NaN matching NaN, with f32's 1e-5 +
1e-4 and 4 units in the last place for f16 and bf16 (a GPU sums in another order, and a sum
that lands near a rounding boundary rounds to the neighbouring half-precision value). Flint
writes bf16 as `<f4`: an f4 file whose values are all bf16 values is compared as bf16. Exits 1
on the first file that differs, printing where."""
import ast
import math
import os
import struct
import sys

FORMATS = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "|b1": "?", "<f2": "e", "|u1": "B"}


# (atol, rtol) by .npy descr (bf16 as raw 16-bit words, `<u2`, or as `<f4` values).
TOLERANCE = {"<f2": (4e-3, 4 * 2.0**-10), "<u2": (3e-2, 4 * 2.0**-7)}


def bf16_values(values):
    """Whether every value is a bf16 value (the low 16 bits of its f32 are zero)."""
    return all(struct.unpack("<I", struct.pack("<f", v))[0] & 0xFFFF == 0 for v in values)


def descr(path):
    with open(path, "rb") as f:
        head = f.read(256).decode("latin1")
    return head.split("'descr': '")[1].split("'")[0]


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
        kind = descr(os.path.join(a_dir, name))
        if kind == "<f4" and bf16_values(a) and bf16_values(b):
            kind = "<u2"
        atol, rtol = TOLERANCE.get(kind, (1e-5, 1e-4))
        if len(a) != len(b):
            print(f"{name}: {len(a)} vs {len(b)} elements")
            return 1
        for i, (x, y) in enumerate(zip(a, b)):
            x, y = float(x), float(y)
            if math.isnan(x) and math.isnan(y):
                continue
            if x != y and not abs(x - y) <= atol + rtol * abs(x):
                print(f"{name}: element {i}: {x} vs {y}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

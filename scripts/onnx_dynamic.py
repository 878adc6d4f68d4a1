#!/usr/bin/env python3
"""Dynamic axes: models exported by PyTorch with `dynamic_axes` (a symbolic batch, and a
symbolic sequence length for the transformer blocks), each imported once by `flint import
--dim-bound ...` and evaluated by `flint eval` at several sizes, on the same inputs as ONNX
Runtime; writes the "Dynamic axes" section of conformance/ZOO.md.

    sudo apt-get install python3-torch python3-torchvision        # Debian's CPU build
    /usr/bin/python3 -m pip install onnx==1.22.0 onnxruntime      # beside Debian's numpy
    cargo build -p flint-compiler --bin flint       # the newer of target/{release,debug}/flint; FLINT=path overrides
    /usr/bin/python3 scripts/onnx_dynamic.py [MODEL ...]

Models: torchvision's ResNet-18 and Swin-T (64x64 images), ViT-B/32 (224x224; torchvision
zero-initializes its head, which gets random weights here), with input `input` [batch, 3,
H, W]; and the BERT- and GPT-2-style blocks of examples/onnx/export.py with batch and seq
dynamic. Weights are random (nothing is downloaded), batch-norm statistics randomized. The
relative error is max |Flint - ORT| / max |ORT|. Files stay in target/onnx-dynamic/.
"""

import importlib.util
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

from onnx_zoo import randomize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "target", "onnx-dynamic")
ZOO = os.path.join(ROOT, "conformance", "ZOO.md")
SECTION = "## Dynamic axes"


def flint_binary():
    if "FLINT" in os.environ:
        return os.environ["FLINT"]
    built = [os.path.join(ROOT, "target", p, "flint") for p in ("release", "debug")]
    built = [p for p in built if os.path.exists(p)]
    return os.path.abspath(max(built, key=os.path.getmtime)) if built else "flint"  # the newer build


def classifier(name, **kw):
    return randomize(getattr(torchvision.models, name)(weights=None, **kw).eval())


def image_model(name, side, **kw):
    """A classifier with input `input` [batch, 3, side, side] and output `logits`."""

    def inputs(b, _s):
        return [torch.randn(b, 3, side, side)]

    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    return dict(
        build=lambda: classifier(name, **kw),
        inputs=inputs,
        names=["input"],
        outputs=["logits"],
        axes=axes,
        bounds={"batch": 4},
        sizes=[(1, None), (2, None), (3, None)],
        shape=f"[batch, 3, {side}, {side}]",
    )


def block_models():
    spec = importlib.util.spec_from_file_location("export", os.path.join(ROOT, "examples", "onnx", "export.py"))
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    out = {}
    for name, (model, inputs, _, ins, outs, axes) in export.blocks().items():
        out[name] = dict(
            build=lambda model=model: model.eval(),
            inputs=inputs,
            names=ins,
            outputs=outs,
            axes=axes,
            bounds={"batch": 4, "seq": 16},
            sizes=[(1, 3), (2, 9), (3, 16)],
            shape="[batch, seq]" + (", 32" if name == "bert_block" else ""),
        )
    return out


def models():
    all_models = {
        "resnet18": image_model("resnet18", 64),
        "vit_b_32": image_model("vit_b_32", 224),
        "swin_t": image_model("swin_t", 64),
    }
    all_models.update(block_models())
    return all_models


def run(cmd):
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        raise RuntimeError(lines[-1])
    return time.time() - start


def check(name, m, flint, ort):
    """Exports once, imports once, evaluates at each size; returns the table rows."""
    torch.manual_seed(0)
    model = m["build"]()
    base = os.path.join(OUT, name)
    example = m["inputs"](2, 5)  # exported at batch 2 (and seq 5); any size would do
    torch.onnx.export(
        model,
        tuple(example),
        base + ".onnx",
        input_names=m["names"],
        output_names=m["outputs"],
        dynamic_axes=m["axes"],
        opset_version=17,
    )
    bounds = [f"--dim-bound={k}={v}" for k, v in m["bounds"].items()]
    try:
        weights = ["--weights-out", base + ".safetensors"]
        seconds = run([flint, "import", base + ".onnx", "-o", base + ".tg"] + weights + bounds)
    except RuntimeError as e:
        return [f"| {name} | {m['shape']} | | failed to import: {e} | | |"]
    rows = []
    sess = ort.InferenceSession(base + ".onnx", providers=["CPUExecutionProvider"])
    for b, s in m["sizes"]:
        torch.manual_seed(100 + b)
        xs = [x.numpy() for x in m["inputs"](b, s)]
        size = f"batch={b}" + ("" if s is None else f", seq={s}")
        tag = f"{b}" if s is None else f"{b}x{s}"
        args = []
        for n, x in zip(m["names"], xs):
            path = f"{base}_{tag}_{n}.npy"
            np.save(path, x)
            args += ["--input", f"{n}={path}"]
        (want,) = sess.run(None, dict(zip(m["names"], xs)))
        out = f"{base}_{tag}_out"
        try:
            t = run([flint, "eval", base + ".tg", "--weights", base + ".safetensors", "--out", out] + args)
        except RuntimeError as e:
            rows.append(f"| {name} | {m['shape']} | {size} | failed: {e} | | |")
            continue
        got = np.load(os.path.join(out, m["outputs"][0] + ".npy"))
        if got.shape != want.shape:
            rows.append(f"| {name} | {m['shape']} | {size} | shape {got.shape}, ORT {want.shape} | | |")
            continue
        rel = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
        rows.append(f"| {name} | {m['shape']} | {size} | {rel:.1e} | {np.abs(want).max():.2f} | {t:.1f} |")
        print(rows[-1], flush=True)
    rows[0] = rows[0].replace(f"| {name} |", f"| {name} (import {seconds:.1f} s) |", 1)
    return rows


def row_model(row):
    return row.split("|")[1].split(" (import")[0].strip()


def write_section(rows, ort, flint):
    """Rewrites the section; rows of models not run this time are kept, in model order."""
    text = open(ZOO).read() if os.path.exists(ZOO) else "# Real models: torchvision against ONNX Runtime\n"
    text, _, old = text.partition("\n" + SECTION)
    ran = {row_model(r) for r in rows}
    kept = [r for r in old.splitlines() if r.startswith("| ") and not r.startswith(("| model |", "| --- |"))]
    rows = [r for r in kept if row_model(r) not in ran] + rows
    order = list(models())
    rows.sort(key=lambda r: order.index(row_model(r)) if row_model(r) in order else len(order))
    text = text.rstrip("\n") + "\n\n"
    text += (
        f"{SECTION}\n\n"
        "Generated by `scripts/onnx_dynamic.py` (do not edit): each model exported once by PyTorch "
        f"{torch.__version__} with `dynamic_axes` (opset 17, torchvision {torchvision.__version__}), imported "
        "once by `flint import --dim-bound batch=4` (and `seq=16` for the blocks), and the one `.tg` evaluated "
        f"by `flint eval` at each size on the inputs ONNX Runtime {ort.__version__} ran. Relative error is "
        f"max |Flint - ORT| / max |ORT|; times are `{os.path.relpath(flint, ROOT)}`'s. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}.\n\n"
        "| model | input | size | relative error | max abs output | flint eval s |\n"
        "| --- | --- | --- | ---: | ---: | ---: |\n"
    )
    text += "\n".join(rows) + "\n"
    with open(ZOO, "w") as f:
        f.write(text)


def main():
    import onnxruntime as ort

    os.makedirs(OUT, exist_ok=True)
    flint = flint_binary()
    chosen = sys.argv[1:] or list(models())
    rows = []
    for name, m in models().items():
        if name in chosen:
            new = check(name, m, flint, ort)
            print("\n".join(r for r in new if "failed" in r or "ORT (" in r), flush=True)
            rows += new
    write_section(rows, ort, flint)


if __name__ == "__main__":
    sys.exit(main())

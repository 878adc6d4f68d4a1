#!/usr/bin/env python3
"""The "Against ONNX Runtime" table of `make bench`: Flint's runtime and ONNX Runtime on the
same ONNX graphs, the same inputs and the same thread counts (1 and 2). Prints a Markdown
section.

    python3 bench/ort_compare.py [FLINT] [--only NAME ...] [--threads 1,2]

FLINT defaults to target/debug/flint (the build with MLIR, which `flint bench` needs).

Workloads: examples/onnx/mlp.onnx, block.onnx and mobilenet_v2.onnx on their *_input.npy,
and a 12-layer GPT-2-small-shaped stack (d=768, 12 heads of 64, MLP 3072, pre-norm, causal
attention, tanh GELU; batch 1, sequence 128, the shapes of bench/gpt2_stack.py) built here
with onnx.helper at opset 17 from seeded random weights (static shapes, about 340 MB), in a
temporary directory.

For each workload and thread count T, back to back in this one process:
- Flint: `flint run FILE --dim-bound ... --input ... --threads T --out DIR` once, whose
  output is compared with ONNX Runtime's (max |flint - ort| / max |ort|), then
  `flint bench FILE ... --threads T --iters K --warmup W` (its own timer, in process);
- ONNX Runtime: an InferenceSession on CPUExecutionProvider with intra_op_num_threads=T,
  inter_op_num_threads=1 and the default graph optimizations; `sess.run` timed with
  time.perf_counter over the same K runs after the same W warm-up runs (`flint bench`'s first
  run is its first warm-up run; `load_and_first_run_ms` adds the load to it).
A workload whose `flint run` takes over SLOW_RUN_S (load included) gets only the runs that fit
in FLINT_BUDGET_S at that time each, on both sides, keeping one warm-up run. Every symbolic dim of a model's inputs is
given `--dim-bound NAME=N` with N the size of the input it runs on. Progress goes to stderr,
one line per row.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
EXAMPLES = os.path.join(ROOT, "examples", "onnx")
THREADS = [1, 2]
FLINT_TIMEOUT_S = 600
# A workload whose `flint run` (load included) takes over SLOW_RUN_S gets only the runs that fit
# in FLINT_BUDGET_S at that time each (at least one): the GPT-2 stack while Flint is slow on it.
SLOW_RUN_S = 5
FLINT_BUDGET_S = 30


# --- workloads -------------------------------------------------------------------------


def example(name, iters, warmup):
    """A model of examples/onnx/ with input `x` from NAME_input.npy."""
    return dict(
        name=f"{name}.onnx",
        model=lambda _tmp: os.path.join(EXAMPLES, f"{name}.onnx"),
        inputs=lambda _tmp: {"x": os.path.join(EXAMPLES, f"{name}_input.npy")},
        iters=iters,
        warmup=warmup,
    )


def gpt2_workload(layers=12, seq=128, iters=10, warmup=2):
    def model(tmp):
        path = os.path.join(tmp, f"gpt2_{layers}.onnx")
        onnx.save(gpt2_stack(layers, seq), path)
        return path

    def inputs(tmp):
        path = os.path.join(tmp, "gpt2_x.npy")
        np.save(path, np.random.default_rng(1).standard_normal((1, seq, 768), dtype=np.float32))
        return {"x": path}

    return dict(
        name=f"GPT-2-small stack, {layers} layers (1x{seq})", model=model, inputs=inputs, iters=iters, warmup=warmup
    )


WORKLOADS = {
    "mlp": example("mlp", iters=200, warmup=20),
    "block": example("block", iters=200, warmup=20),
    "mobilenet_v2": example("mobilenet_v2", iters=50, warmup=5),
    "gpt2": gpt2_workload(),
}


# --- the GPT-2-small-shaped stack as ONNX ------------------------------------------------


class GraphBuilder:
    """Nodes and initializers of one ONNX graph, with fresh value names."""

    def __init__(self, seed):
        self.nodes, self.inits, self.rng, self.count = [], {}, np.random.default_rng(seed), 0

    def const(self, name, array):
        """An initializer (shared by name: built once)."""
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(array), name)
        return name

    def weight(self, name, shape, std=0.02, mean=0.0):
        return self.const(name, (mean + std * self.rng.standard_normal(shape)).astype(np.float32))

    def op(self, op_type, *inputs, outputs=1, name=None, **attrs):
        """One node; its output's name (NAME, or a fresh one), or the list of OUTPUTS names."""
        names = [name] if name else [f"{op_type.lower()}_{self.count}_{i}" for i in range(outputs)]
        self.count += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


def layer_norm(g, x, prefix, name=None):
    gamma = g.weight(f"{prefix}_g", [768], std=0.1, mean=1.0)
    beta = g.weight(f"{prefix}_b", [768], std=0.1)
    return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=1e-5, name=name)


def linear(g, x, prefix, n_in, n_out):
    return g.op("Add", g.op("MatMul", x, g.weight(f"{prefix}_w", [n_in, n_out])), g.weight(f"{prefix}_b", [n_out]))


def attention(g, x, prefix, seq):
    """Causal multi-head attention, 12 heads of 64, written out as ONNX exporters do."""
    qkv = linear(g, x, f"{prefix}_c_attn", 768, 2304)
    split = g.const("split_768x3", np.array([768, 768, 768], np.int64))
    q, k, v = g.op("Split", qkv, split, outputs=3, axis=-1)
    heads = g.const("shape_heads", np.array([1, seq, 12, 64], np.int64))
    q = g.op("Transpose", g.op("Reshape", q, heads), perm=[0, 2, 1, 3])  # [1, 12, S, 64]
    k = g.op("Transpose", g.op("Reshape", k, heads), perm=[0, 2, 3, 1])  # [1, 12, 64, S]
    v = g.op("Transpose", g.op("Reshape", v, heads), perm=[0, 2, 1, 3])
    scores = g.op("Mul", g.op("MatMul", q, k), g.const("scale", np.array(0.125, np.float32)))
    mask = np.where(np.tril(np.ones((seq, seq), bool)), 0.0, -1e9).astype(np.float32)
    probs = g.op("Softmax", g.op("Add", scores, g.const("causal_mask", mask)), axis=-1)
    o = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    o = g.op("Reshape", o, g.const("shape_model", np.array([1, seq, 768], np.int64)))
    return linear(g, o, f"{prefix}_c_proj", 768, 768)


def gelu_tanh(g, x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    f32 = lambda name, v: g.const(name, np.array(v, np.float32))  # noqa: E731
    cube = g.op("Pow", x, f32("three", 3.0))
    inner = g.op("Add", x, g.op("Mul", cube, f32("gelu_c", 0.044715)))
    inner = g.op("Mul", inner, f32("sqrt_2_pi", np.sqrt(2 / np.pi)))
    return g.op("Mul", g.op("Mul", x, f32("half", 0.5)), g.op("Add", g.op("Tanh", inner), f32("one", 1.0)))


def mlp(g, x, prefix):
    return linear(g, gelu_tanh(g, linear(g, x, f"{prefix}_c_fc", 768, 3072)), f"{prefix}_c_proj", 3072, 768)


def gpt2_stack(layers, seq, seed=0):
    """The stack of bench/gpt2_stack.py as an opset-17 ONNX model: x [1, seq, 768] -> y."""
    g = GraphBuilder(seed)
    h = "x"
    for i in range(layers):
        p = f"h{i}"
        r = g.op("Add", h, attention(g, layer_norm(g, h, f"{p}_ln_1"), f"{p}_attn", seq))
        h = g.op("Add", r, mlp(g, layer_norm(g, r, f"{p}_ln_2"), f"{p}_mlp"))
    layer_norm(g, h, "ln_f", name="y")
    graph = helper.make_graph(
        g.nodes,
        f"gpt2_{layers}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, 768])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, 768])],
        list(g.inits.values()),
    )
    opset = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opset, producer_name="bench/ort_compare.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- measuring ---------------------------------------------------------------------------


def dim_bounds(model_path, inputs):
    """`NAME=N` for each symbolic dim of the model's inputs, N the size of the array it gets."""
    graph = onnx.load(model_path, load_external_data=False).graph
    bounds = {}
    for value in graph.input:
        if value.name not in inputs:
            continue
        shape = np.load(inputs[value.name], mmap_mode="r").shape
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                bounds[dim.dim_param] = shape[axis]
    return bounds


def flint_args(model, inputs, bounds, threads):
    args = [model]
    for name, n in bounds.items():
        args += ["--dim-bound", f"{name}={n}"]
    for name, path in inputs.items():
        args += ["--input", f"{name}={path}"]
    return args + ["--threads", str(threads)]


def flint(binary, command, args):
    """Runs `flint COMMAND ARGS`; its stdout, or RuntimeError with its last error line."""
    run = subprocess.run([binary, command, *args], capture_output=True, text=True, timeout=FLINT_TIMEOUT_S)
    if run.returncode != 0:
        lines = [line for line in (run.stderr + run.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"`flint {command}` exited {run.returncode}: " + (lines[-1] if lines else "(no output)"))
    return run.stdout


def flint_output(binary, args, out_dir):
    """`flint run ... --out DIR` once; its first output as an array."""
    flint(binary, "run", args + ["--out", out_dir])
    files = sorted(f for f in os.listdir(out_dir) if f.endswith(".npy"))
    if not files:
        raise RuntimeError(f"`flint run` wrote no .npy in {out_dir}")
    return np.load(os.path.join(out_dir, files[0]))


def flint_bench(binary, args, iters, warmup):
    """`flint bench`'s line as a dict of floats."""
    line = flint(binary, "bench", args + ["--iters", str(iters), "--warmup", str(warmup)]).strip().splitlines()[-1]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.eE+-]+)", line)}


def ort_session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_bench(sess, feeds, iters, warmup):
    """Median and p90 ms of `sess.run` over ITERS runs after WARMUP; and the first output."""
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        out = sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return dict(median_ms=statistics.median(times), p90_ms=percentile(times, 90)), out[0]


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def ort_call_overhead_ms(iters=200):
    """Median ms of `sess.run` on a one-`Identity` model of mlp.onnx's input size: what the
    Python call costs in ORT's column."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort_session(model.SerializeToString(), 1)
    return ort_bench(sess, {"x": np.zeros((5, 64), np.float32)}, iters, 20)[0]["median_ms"]


def rel_error(got, want):
    if got.shape != want.shape:
        raise RuntimeError(f"output shape {got.shape}, ONNX Runtime's {want.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-30))


def affordable(iters, warmup, seconds_per_run):
    """(iters, warmup), cut to fit FLINT_BUDGET_S when one run takes over SLOW_RUN_S; at least
    one timed run, and one warm-up run if WARMUP asks for any (so no timed run is a cold one)."""
    runs = int(FLINT_BUDGET_S / max(seconds_per_run, 1e-9))
    if seconds_per_run <= SLOW_RUN_S or runs >= iters + warmup:
        return iters, warmup
    warmup = min(warmup, 1)
    return max(1, min(iters, runs - warmup)), warmup


def measure_one(binary, model, inputs, bounds, feeds, t, iters, warmup, tmp):
    """One workload at T threads: `flint run` (checked against ORT), `flint bench`, ORT."""
    row = dict(threads=t)
    args = flint_args(model, inputs, bounds, t)
    try:
        with tempfile.TemporaryDirectory(dir=tmp) as out_dir:
            start = time.perf_counter()
            got = flint_output(binary, args, out_dir)
            seconds = time.perf_counter() - start
            if seconds > SLOW_RUN_S:
                # The command's time includes importing and compiling; budget by the run alone.
                seconds = flint_bench(binary, args, 1, 0)["median_ms"] / 1e3
            iters, warmup = affordable(iters, warmup, seconds)
        row["flint"] = flint_bench(binary, args, iters, warmup)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        got, row["failed"] = None, str(e)
    row["iters"], row["warmup"] = iters, warmup
    try:
        row["ort"], want = ort_bench(ort_session(model, t), feeds, iters, warmup)
    except Exception as e:  # noqa: BLE001 (ORT's errors have no common base)
        row["failed"] = row.get("failed", "") + f" ONNX Runtime: {e}"
        return row
    if got is not None:
        try:
            row["error"] = rel_error(got, want)
        except RuntimeError as e:
            row["failed"] = str(e)
    return row


def measure(binary, workload, threads, tmp):
    """Rows {workload, threads, iters, warmup, flint, ort, error | failed} at each thread count."""
    try:
        model, inputs = workload["model"](tmp), workload["inputs"](tmp)
        bounds = dim_bounds(model, inputs)
        feeds = {name: np.load(path) for name, path in inputs.items()}
    except Exception as e:  # noqa: BLE001 (a workload that cannot be built fails alone)
        return [dict(workload=workload["name"], threads=t, failed=f"building it: {e}") for t in threads]
    rows = []
    for t in threads:
        row = measure_one(binary, model, inputs, bounds, feeds, t, workload["iters"], workload["warmup"], tmp)
        rows.append(dict(workload=workload["name"], **row))
        print(f"# {rows[-1]}", file=sys.stderr)
    return rows


def artifact_load_ms(binary, workload, tmp):
    """`load_and_first_run_ms` of `flint bench` on a .tgx compiled beforehand (`flint compile -o`)."""
    model, inputs = workload["model"](tmp), workload["inputs"](tmp)
    artifact = os.path.join(tmp, "load.tgx")
    bounds = [a for n, v in dim_bounds(model, inputs).items() for a in ("--dim-bound", f"{n}={v}")]
    flint(binary, "compile", [model, *bounds, "-o", artifact])
    args = [artifact] + [a for n, p in inputs.items() for a in ("--input", f"{n}={p}")] + ["--threads", "1"]
    return flint_bench(binary, args, 1, 0)["load_and_first_run_ms"]


# --- the section -------------------------------------------------------------------------


def cpu_model():
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"^Model name:\s*(.+)$", lscpu, re.M)[1].strip()
    except (OSError, TypeError):
        return "unknown CPU"


def ms(value):
    return f"{value:.4f}" if value < 10 else f"{value:.1f}"


def table_row(r):
    """One Markdown row; a failed one says why in the error column."""
    f, o = r.get("flint"), r.get("ort")
    cells = [r["workload"], str(r["threads"]), f"{r.get('iters', '-')} (+{r.get('warmup', '-')})"]
    cells += [ms(f["median_ms"]), ms(f["p90_ms"])] if f else ["failed", "-"]
    cells += [ms(o["median_ms"]), ms(o["p90_ms"])] if o else ["failed", "-"]
    cells += [f"{o['median_ms'] / f['median_ms']:.2f}" if f and o else "-", ">= 1.0"]
    if "failed" in r:
        cells.append("failed: " + r["failed"].replace("|", "\\|").replace("\n", " "))
    else:
        cells.append(f"{r['error']:.1e}")
    return "| " + " | ".join(cells) + " |"


def print_section(rows, artifact_ms, overhead_ms):
    print("## Against ONNX Runtime")
    print()
    print(
        f"Flint's runtime (`flint bench`, debug build of the compiler; kernels at -O3) and ONNX Runtime "
        f"{ort.__version__} (onnx {onnx.__version__}; CPUExecutionProvider, default graph optimizations, "
        f"`intra_op_num_threads` = threads, `inter_op_num_threads` = 1) on the same ONNX files, inputs and "
        f"thread counts, one after the other in one run of `bench/ort_compare.py` on {cpu_model()} "
        f"({os.cpu_count()} cores). Median and p90 ms over the same timed runs after the same warm-up runs "
        f"(iters (+warm-up)); a workload whose `flint run` takes over {SLOW_RUN_S} s gets the runs that fit in "
        f"{FLINT_BUDGET_S} s at that time each, keeping one warm-up run. ORT is timed around `sess.run` from "
        "Python (its call overhead, microseconds, included), Flint in process by `flint bench`. Error: "
        "max |Flint - ORT| / max |ORT| of the output of `flint run` with the same options. The GPT-2 stack "
        "(the shapes of `bench/gpt2_stack.py`) is built by the script with `onnx.helper`: opset 17, "
        "random weights (seed 0), MatMul/Add/LayerNormalization/Split/Reshape/Transpose/Softmax/Pow/Tanh/Mul, "
        "causal attention by an additive mask."
    )
    print()
    print(
        "| workload | threads | iters (+warm-up) | flint median ms | flint p90 ms | ORT median ms | ORT p90 ms | "
        "speed vs ORT (ORT ms / Flint ms) | goal | max rel error |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(table_row(r))
    print()
    print(
        f"`sess.run` of a one-`Identity` model (mlp.onnx's input size) takes {overhead_ms:.4f} ms: the call "
        "overhead inside ORT's column, which matters for the microsecond-sized workloads."
    )
    print()
    loads = [
        f"{r['flint']['load_and_first_run_ms']:.1f} ms at {r['threads']} thread(s)"
        for r in rows
        if r["workload"] == "mlp.onnx" and "flint" in r
    ]
    if loads:
        print(
            f"Flint's `load_and_first_run_ms` for mlp.onnx (the load from the compiled artifact's bytes "
            f"and the first run; compiling not counted): {', '.join(loads)} compiled in memory from the "
            f".onnx; {artifact_ms} from a .tgx file written beforehand by `flint compile -o`. Goal: < 50 ms."
        )
    else:
        print("Flint's `load_and_first_run_ms` for mlp.onnx: not measured (mlp.onnx did not run). Goal: < 50 ms.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flint", nargs="?", default=os.path.join(ROOT, "target", "debug", "flint"))
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), help="run only these workloads")
    parser.add_argument("--threads", default=",".join(map(str, THREADS)), help="comma-separated thread counts")
    a = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temporary directory goes too
    binary = os.path.abspath(a.flint)
    threads = [int(t) for t in a.threads.split(",")]
    workloads = [WORKLOADS[n] for n in (a.only or WORKLOADS)]
    rows, artifact_ms = [], "not measured"
    with tempfile.TemporaryDirectory(prefix="flint-ort-") as tmp:
        for w in workloads:
            rows += measure(binary, w, threads, tmp)
        if WORKLOADS["mlp"] in workloads:
            try:
                artifact_ms = f"{artifact_load_ms(binary, WORKLOADS['mlp'], tmp):.1f} ms"
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                artifact_ms = f"failed ({e})"
    print_section(rows, artifact_ms, ort_call_overhead_ms())


if __name__ == "__main__":
    main()

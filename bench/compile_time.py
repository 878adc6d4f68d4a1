#!/usr/bin/env python3
"""The compile-time table of `make bench`: `flint compile` on the GPT-2-small-shaped stack
(bench/gpt2_stack.py) at 1, 12 and 48 layers; the front end's and each stage's median time
over five runs, the nodes and the kernels. "stages total" is every graph- and kernel-level
stage, without the front end. Prints a Markdown section.

    python3 bench/compile_time.py path/to/flint"""
import os
import re
import statistics
import subprocess
import sys
import tempfile

LAYERS = [1, 12, 48]
RUNS = 5
LINE = re.compile(r"^(\S+)\s+([0-9.]+) ms\s*(.*)$")


def stages(flint, source):
    """One `flint compile`: [(stage, ms, summary)] from its stderr lines."""
    run = subprocess.run([flint, "compile", source], capture_output=True, text=True, check=True)
    return [(m[1], float(m[2]), m[3]) for m in map(LINE.match, run.stderr.splitlines()) if m]


def main():
    flint = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers in LAYERS:
            source = os.path.join(tmp, f"gpt2_{layers}.tg")
            with open(source, "w") as f:
                subprocess.run([sys.executable, os.path.join(here, "gpt2_stack.py"), str(layers)], stdout=f, check=True)
            runs = [stages(flint, source) for _ in range(RUNS)]
            names = [name for name, _, _ in runs[0]]
            median = {n: statistics.median(r[i][1] for r in runs) for i, n in enumerate(names)}
            summary = {name: text for name, _, text in runs[0]}
            nodes = re.findall(r"\d+", summary["front-end"])[0], re.findall(r"\d+", summary["dce"])[-1]
            kernels = re.findall(r"\d+", summary["fusion"])[0]
            rows.append((layers, nodes, kernels, names, median))
    names = [n for n in rows[0][3] if n != "total"]  # front-end first, then every stage
    print("| layers | nodes in | nodes after passes | kernels | " + " | ".join(f"{n} ms" for n in names) + " | stages total ms |")
    print("|---:|---:|---:|---:|" + "---:|" * len(names) + "---:|")
    for layers, (n_in, n_out), kernels, _, median in rows:
        cells = " | ".join(f"{median[n]:.1f}" for n in names)
        print(f"| {layers} | {n_in} | {n_out} | {kernels} | {cells} | {median['total']:.1f} |")
    total = {layers: median["total"] for layers, _, _, _, median in rows}
    print()
    print(f"48 layers / 12 layers: {total[48] / total[12]:.2f}x the time for 4x the layers.")


if __name__ == "__main__":
    main()

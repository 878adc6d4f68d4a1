#!/usr/bin/env python3
"""NumPy's matmul (OpenBLAS) on the shapes of the CPU kernel benchmark, median of five runs;
one `case=... gflops=...` line each. Run with OPENBLAS_NUM_THREADS=1 for a single thread."""
import time

import numpy as np

CASES = {
    "matmul_512": ((512, 512), (512, 512)),
    "matmul_1024": ((1024, 1024), (1024, 1024)),
    "matmul_gpt2_mlp": ((128, 768), (768, 3072)),
    "attention_scores": ((12, 128, 64), (12, 64, 128)),
}

try:
    from threadpoolctl import threadpool_info

    info = [f"{i.get('internal_api')}:{i.get('architecture')}:{i.get('num_threads')}" for i in threadpool_info()]
    print("# blas", " ".join(info))
except ImportError:
    pass

rng = np.random.default_rng(0)
for name, (sa, sb) in CASES.items():
    a, b = rng.random(sa, dtype=np.float32), rng.random(sb, dtype=np.float32)
    a @ b
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    t = sorted(times)[2]
    flops = 2 * np.prod(sa[:-1]) * sa[-1] * sb[-1]
    print(f"case={name} median_ms={t * 1e3:.2f} gflops={flops / t / 1e9:.2f}")

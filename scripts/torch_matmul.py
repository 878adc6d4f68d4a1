#!/usr/bin/env python3
"""cuBLAS (through PyTorch, when it is installed) on an N x N x N matmul of DTYPE (f16 or bf16) on
CUDA device 0: prints `cublas_tflops=T cublas_ms=M`, best of 20 after 3 warm-up runs, or
`cublas_tflops=none` without PyTorch or CUDA."""
import sys


def main():
    n, dtype = int(sys.argv[1]), sys.argv[2]
    try:
        import torch
    except ImportError:
        print("cublas_tflops=none (no PyTorch)")
        return
    if not torch.cuda.is_available():
        print("cublas_tflops=none (PyTorch without CUDA)")
        return
    t = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, device="cuda", dtype=t)
    b = torch.randn(n, n, device="cuda", dtype=t)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for i in range(23):
        start.record()
        torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            best = min(best, start.elapsed_time(end))
    print(f"cublas_tflops={2 * n**3 / (best / 1e3) / 1e12:.1f} cublas_ms={best:.4f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The device's copy bandwidth: a device-to-device copy of BYTES (default 64 MiB) on CUDA device 0,
timed by CUDA events, best of 20 after 3 warm-up copies. Prints `copy_gbps=G` (bytes read plus
bytes written per second, as the benchmarks count them). Needs only the driver (libcuda)."""
import ctypes
import sys


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64 << 20
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        print("copy_gbps=none (no CUDA driver)")
        return

    def check(status, what):
        if status != 0:
            sys.exit(f"{what} failed: CUresult {status}")

    check(cuda.cuInit(0), "cuInit")
    device, context = ctypes.c_int(), ctypes.c_void_p()
    check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    src, dst = ctypes.c_uint64(), ctypes.c_uint64()
    check(cuda.cuMemAlloc_v2(ctypes.byref(src), ctypes.c_size_t(size)), "cuMemAlloc")
    check(cuda.cuMemAlloc_v2(ctypes.byref(dst), ctypes.c_size_t(size)), "cuMemAlloc")
    start, end = ctypes.c_void_p(), ctypes.c_void_p()
    check(cuda.cuEventCreate(ctypes.byref(start), 0), "cuEventCreate")
    check(cuda.cuEventCreate(ctypes.byref(end), 0), "cuEventCreate")
    best = float("inf")
    for i in range(23):
        check(cuda.cuEventRecord(start, None), "cuEventRecord")
        check(cuda.cuMemcpyDtoD_v2(dst, src, ctypes.c_size_t(size)), "cuMemcpyDtoD")
        check(cuda.cuEventRecord(end, None), "cuEventRecord")
        check(cuda.cuEventSynchronize(end), "cuEventSynchronize")
        ms = ctypes.c_float()
        check(cuda.cuEventElapsedTime(ctypes.byref(ms), start, end), "cuEventElapsedTime")
        if i >= 3:
            best = min(best, ms.value)
    print(f"copy_gbps={2 * size / (best / 1e3) / 1e9:.1f} copy_ms={best:.4f} bytes={size}")


if __name__ == "__main__":
    main()

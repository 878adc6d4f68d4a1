//! The CUDA probe never panics: without `libcuda` it reports `NoCudaDriver`; with a GPU it
//! finds at least one device and opens it. Which case applies is detected from the machine
//! (the driver library, and the NVIDIA device nodes the kernel driver creates) and printed,
//! so a silently skipped GPU check cannot pass for a real one. Set `FLINT_EXPECT_GPU=1` on a
//! GPU machine to make the absence of a usable GPU a failure.

use std::path::Path;

use flint_runtime::device::cuda_driver_present;
use flint_runtime::{cuda_device_count, Device, RuntimeError};

/// Whether the kernel driver exposes at least one NVIDIA GPU on this machine.
fn gpu_device_nodes_present() -> bool {
    let proc_gpus = std::fs::read_dir("/proc/driver/nvidia/gpus").map(|mut d| d.next().is_some()).unwrap_or(false);
    proc_gpus || Path::new("/dev/nvidia0").exists()
}

fn gpu_expected() -> bool {
    std::env::var("FLINT_EXPECT_GPU").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

#[test]
fn cuda_probe_reports_the_machine_state_without_panicking() {
    let driver = cuda_driver_present();
    let gpu_nodes = gpu_device_nodes_present();
    eprintln!("libcuda present: {driver}; NVIDIA GPU device nodes present: {gpu_nodes}");

    if gpu_expected() {
        assert!(driver, "FLINT_EXPECT_GPU is set but libcuda cannot be loaded");
    }

    if !driver {
        // No driver library: both entry points must return the typed error, not panic.
        let count = cuda_device_count();
        assert!(matches!(count, Err(RuntimeError::NoCudaDriver)), "expected NoCudaDriver, got {count:?}");
        let device = Device::cuda(0);
        assert!(matches!(device, Err(RuntimeError::NoCudaDriver)), "expected NoCudaDriver, got {device:?}");
        let message = RuntimeError::NoCudaDriver.to_string();
        assert!(message.contains("libcuda"), "{message}");
        eprintln!("checked: no CUDA driver on this machine, reported as RuntimeError::NoCudaDriver");
        return;
    }

    let count = cuda_device_count();
    if gpu_nodes || gpu_expected() {
        let count = match count {
            Ok(count) => count,
            Err(error) => panic!("a GPU is present but the device count failed: {error}"),
        };
        assert!(count >= 1, "a GPU is present but the driver reports {count} devices");
        let device = match Device::cuda(0) {
            Ok(Device::Cuda(device)) => device,
            other => panic!("cannot open CUDA device 0: {other:?}"),
        };
        assert_eq!(device.ordinal(), 0);
        let name = device.name().unwrap_or_else(|error| panic!("device name: {error}"));
        let (major, minor) = device.compute_capability().unwrap_or_else(|error| panic!("compute capability: {error}"));
        let integrated = device.is_integrated().unwrap_or_else(|error| panic!("integrated attribute: {error}"));
        assert!(major >= 7, "unexpected compute capability {major}.{minor}");
        eprintln!("checked: {count} CUDA device(s); device 0 is {name}, sm_{major}{minor}, integrated: {integrated}");
        let beyond = Device::cuda(count);
        assert!(
            matches!(beyond, Err(RuntimeError::NoSuchDevice { ordinal, count: c }) if ordinal == count && c == count),
            "expected NoSuchDevice for ordinal {count}, got {beyond:?}"
        );
    } else {
        // A driver library without a GPU (e.g. a container with the driver mounted but no
        // device): no devices, or a driver error from cuInit; never a panic.
        match count {
            Ok(count) => {
                assert_eq!(count, 0, "no GPU device nodes, yet the driver reports {count} devices");
                let device = Device::cuda(0);
                assert!(matches!(device, Err(RuntimeError::NoSuchDevice { .. })), "{device:?}");
                eprintln!("checked: CUDA driver present, no devices");
            }
            Err(RuntimeError::Driver { call, source }) => {
                eprintln!("checked: CUDA driver present, no GPU; {call} reports {source}");
            }
            Err(error) => panic!("unexpected error with a driver but no GPU: {error}"),
        }
    }
}

//! The shared numeric runtime: device, dtype, thread count and seed.
//!
//! Every component (scGPT extraction, SAE training, SpikGPT) takes a [`Runtime`] instead of choosing
//! these itself, so `--device`, `--threads` and `--seed` mean the same everywhere.

use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where tensors live: the CPU, or a CUDA GPU (only with the `cuda` cargo feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DeviceSpec {
    /// The CPU (default).
    #[default]
    Cpu,
    /// CUDA device with the given ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            let ordinal = n.parse().map_err(|_| {
                Error::invalid(format!("--device {s}: expected cpu, cuda or cuda:N"))
            })?;
            return Ok(DeviceSpec::Cuda(ordinal));
        }
        Err(Error::invalid(format!(
            "--device {s}: expected cpu, cuda or cuda:N"
        )))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Floating-point precision of model computations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (default; required for parity with the reference code).
    #[default]
    F32,
    /// 16-bit brain floats (CUDA only; faster, not bit-comparable).
    Bf16,
    /// 16-bit IEEE floats (CUDA only).
    F16,
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(Error::invalid(format!(
                "--dtype {other}: expected f32, bf16 or f16"
            ))),
        }
    }
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

/// User-facing runtime options (what `--device`, `--dtype`, `--threads`, `--seed` set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Device to run on.
    pub device: DeviceSpec,
    /// Precision of model weights and activations.
    pub precision: Precision,
    /// Worker threads for rayon and candle's CPU kernels; `None` = all cores.
    pub threads: Option<usize>,
    /// Global seed for every random choice.
    pub seed: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            device: DeviceSpec::Cpu,
            precision: Precision::F32,
            threads: None,
            seed: 42,
        }
    }
}

/// The initialised runtime handed to every component.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The candle device.
    pub device: Device,
    /// The dtype for model computations.
    pub dtype: DType,
    /// Number of worker threads in effect.
    pub threads: usize,
    /// Global seed.
    pub seed: u64,
    /// The options this runtime was built from.
    pub config: RuntimeConfig,
}

impl Runtime {
    /// Build the runtime: set the thread count for rayon and candle, open the device.
    ///
    /// The thread count is process-wide (rayon's global pool and candle's `RAYON_NUM_THREADS`); the
    /// first call fixes it, later calls with another count get an error.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let threads = match config.threads {
            Some(0) => return Err(Error::invalid("--threads must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        set_threads(threads)?;
        let device = open_device(config.device)?;
        if config.precision != Precision::F32 && device.is_cpu() {
            return Err(Error::invalid(format!(
                "--dtype {:?} is only supported on CUDA; use f32 on the CPU",
                config.precision
            )));
        }
        Ok(Runtime {
            device,
            dtype: config.precision.dtype(),
            threads,
            seed: config.seed,
            config,
        })
    }

    /// Error unless the runtime computes in f32: `what` (e.g. "SAE training") has no half-precision
    /// path, and silently computing in f32 under `--dtype bf16` would misreport what ran.
    pub fn require_f32(&self, what: &str) -> Result<()> {
        if self.dtype == DType::F32 {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "--dtype {:?}: {what} computes in f32 only; drop --dtype (the default is f32)",
            self.config.precision
        )))
    }

    /// A CPU runtime with default options (handy in tests and notebooks).
    pub fn cpu() -> Result<Self> {
        Runtime::new(RuntimeConfig::default())
    }

    /// A CPU runtime with a given seed.
    pub fn cpu_with_seed(seed: u64) -> Result<Self> {
        Runtime::new(RuntimeConfig {
            seed,
            ..RuntimeConfig::default()
        })
    }
}

/// Keep freed blocks of up to 32 MiB in the process's heap for reuse instead of returning them to
/// the system (glibc's `M_MMAP_THRESHOLD` at its maximum, `M_TRIM_THRESHOLD` off).
///
/// Training steps and forward passes free and allocate the same few-MiB buffers thousands of times;
/// by default glibc serves each from a fresh `mmap`, so every page is faulted in again (with a TLB
/// shootdown on every core when a zero page is first written): measured, about a quarter of a TopK
/// SAE step's CPU time went to the kernel. Peak memory is unchanged (the largest live set is the
/// same); memory freed after the peak is kept for the process's lifetime. Once per process, glibc
/// on Linux only (other allocators manage this themselves).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters; called once, and before the heavy
            // allocations. Both values are within glibc's accepted ranges (a refusal returns 0 and
            // changes nothing).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}

fn set_threads(threads: usize) -> Result<()> {
    keep_freed_memory();
    // candle's CPU kernels read RAYON_NUM_THREADS (candle_core::utils::get_num_threads).
    if std::env::var("RAYON_NUM_THREADS").ok().as_deref() != Some(&threads.to_string()) {
        // SAFETY: called before worker threads read the environment; single assignment.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == threads => Ok(()),
        Err(_) => {
            // The global pool already exists with another size (e.g. a second Runtime in one
            // process, as in tests). Results never depend on the thread count, so carry on.
            Ok(())
        }
    }
}

fn open_device(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(ordinal) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::invalid(format!(
                    "--device cuda:{ordinal}: this build has no CUDA support; rebuild with `--features cuda`"
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| cuda_open_error(ordinal, &e.to_string()))
        }
    }
}

/// The one-line error for a CUDA device that a CUDA build cannot open: no GPU or driver, an ordinal
/// past the last GPU, a driver older than the toolkit. `cause` is candle's message (the driver's
/// error code and text); only its first line is kept, so a backtrace (`RUST_BACKTRACE`) never turns
/// it into several lines.
fn cuda_open_error(ordinal: usize, cause: &str) -> Error {
    let cause = cause
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    Error::invalid(format!(
        "--device cuda:{ordinal}: cannot open the CUDA device ({cause}); check the GPU and its driver \
         (nvidia-smi), or run with --device cpu"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_specs() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        if candle_core::utils::cuda_is_available() {
            return;
        }
        let err = Runtime::new(RuntimeConfig {
            device: DeviceSpec::Cuda(0),
            ..RuntimeConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--features cuda"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
    }

    #[test]
    fn half_precision_is_refused_where_only_f32_exists() {
        let rt = Runtime::cpu().unwrap();
        assert!(rt.require_f32("SAE training").is_ok());
        let half = Runtime {
            dtype: DType::BF16,
            config: RuntimeConfig {
                precision: Precision::Bf16,
                ..rt.config.clone()
            },
            ..rt
        };
        let e = half.require_f32("SAE training").unwrap_err().to_string();
        assert_eq!(
            e,
            "--dtype Bf16: SAE training computes in f32 only; drop --dtype (the default is f32)"
        );
    }

    #[test]
    fn cuda_open_failure_is_one_line() {
        let cause = "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")\n\
                     stack backtrace:\n   0: candle_core::error::Error::bt\n";
        let msg = cuda_open_error(1, cause).to_string();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(
            msg.starts_with(
                "--device cuda:1: cannot open the CUDA device (DriverError(CUDA_ERROR_NO_DEVICE"
            ),
            "{msg}"
        );
        assert!(msg.contains("--device cpu"), "{msg}");
        assert!(!cuda_open_error(0, "\n").to_string().is_empty());
    }
}

//! Picks the device a model runs on.

use candle_core::Device;

use super::error::ModelError;

/// Which device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The GPU when one is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
    /// The Metal GPU.
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{other}': use auto, cpu, cuda:N or metal")),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal => write!(f, "metal"),
        }
    }
}

/// The device for `choice` and a name for it. `Auto` takes CUDA or Metal when compiled in and
/// present, else the CPU.
pub fn select(choice: DeviceChoice) -> Result<(Device, String), ModelError> {
    let cpu = || (Device::Cpu, format!("cpu ({} threads)", rayon_threads()));
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Cuda(n) => Device::new_cuda(n)
            .map(|d| (d, format!("cuda:{n}")))
            .map_err(|e| {
                ModelError::Device(format!(
                    "CUDA device {n} is not available ({e}); build with --features cuda on a machine with an NVIDIA GPU, or use --device cpu"
                ))
            }),
        DeviceChoice::Metal => Device::new_metal(0)
            .map(|d| (d, "metal".to_string()))
            .map_err(|e| {
                ModelError::Device(format!(
                    "Metal is not available ({e}); build with --features metal on macOS, or use --device cpu"
                ))
            }),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available()
                && let Ok(d) = Device::new_cuda(0)
            {
                return Ok((d, "cuda:0".into()));
            }
            if candle_core::utils::metal_is_available()
                && let Ok(d) = Device::new_metal(0)
            {
                return Ok((d, "metal".into()));
            }
            Ok(cpu())
        }
    }
}

/// Threads candle's CPU kernels use.
pub fn rayon_threads() -> usize {
    candle_core::utils::get_num_threads()
}

//! Picks the device a model runs on.

use candle_core::Device;

use super::error::ModelError;
use crate::cli::DeviceChoice;

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

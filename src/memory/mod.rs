//! Memory: what a model will need (planner, from headers alone) and what the device has
//! (probes for CPU, CUDA and Metal behind one interface).

pub mod allocator;
pub mod breakdown;
pub mod inventory;
pub mod planner;
pub mod probe;

pub use inventory::TensorInfo;
pub use planner::{DeviceKind, FitRow, Plan};
pub use probe::{MemoryProbe, probe_for};

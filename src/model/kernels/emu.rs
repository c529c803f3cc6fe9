//! Test support: runs a [`Launch`] of ossterm's CUDA kernels on the CPU. The kernels' own
//! `.cu` source is compiled by the host's C++ compiler against `emu/include/cuda_emu.h`, a
//! fiber-per-thread emulation of CUDA's blocks, barriers and warp shuffles
//! (`emu/harness.cpp`), and replays the exact launch the CUDA path makes: kernel name,
//! grid, argument order and types, buffer offsets. The harness also runs the launch a second
//! time in the opposite thread order (a race shows as a difference), fills outputs with NaN
//! first (an unwritten value shows), faults on reads past a buffer's end, and checks that
//! inputs stay unchanged.
//!
//! What it cannot show: PTX compilation (`scripts/build-cuda.sh` does that with nvcc), the
//! driver's view of the launch, or speed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Tensor};

use super::launch::{Arg, Launch, output_of};

/// The compiled harness, or why there is none. Built once per version of the sources (kept
/// in the temp folder under their hash, so test runs share it).
fn harness() -> &'static Result<PathBuf, String> {
    static HARNESS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model/kernels");
        let src = kernels.join("emu");
        let sources = [
            src.join("harness.cpp"),
            src.join("include/cuda_emu.h"),
            kernels.join("q4_0_moe.cu"),
            kernels.join("attention.cu"),
            kernels.join("dense.cu"),
        ];
        let mut hasher = std::hash::DefaultHasher::new();
        for file in &sources {
            let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            std::hash::Hash::hash(&text, &mut hasher);
        }
        let hash = std::hash::Hasher::finish(&hasher);
        let dir = std::env::temp_dir().join("ossterm-kernel-emu");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let exe = dir.join(format!("kernel-emu-{hash:016x}"));
        if exe.is_file() {
            return Ok(exe);
        }
        // Built under a name of this process's own, then renamed: concurrent test binaries
        // never run a half-written harness.
        let partial = dir.join(format!("kernel-emu-{hash:016x}.{}", std::process::id()));
        let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let output = Command::new(&compiler)
            .args(["-std=c++17", "-O2", "-w", "-I"])
            .arg(src.join("include"))
            .arg(src.join("harness.cpp"))
            .arg("-o")
            .arg(&partial)
            .output()
            .map_err(|e| format!("no C++ compiler ({compiler}: {e})"))?;
        if !output.status.success() {
            return Err(format!(
                "{compiler} failed on the kernel emulator:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::fs::rename(&partial, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
        Ok(exe)
    })
}

/// Whether the emulator can run here. Without a C++ compiler the emulated-kernel tests are
/// skipped with a message, except under CI (`CI` set), where that is a failure.
pub fn available() -> bool {
    match harness() {
        Ok(_) => true,
        Err(why) if std::env::var_os("CI").is_none() && why.starts_with("no C++ compiler") => {
            eprintln!("skipping the emulated CUDA kernel test: {why}");
            false
        }
        Err(why) => panic!("kernel emulator: {why}"),
    }
}

fn bytes(storage: &CpuStorage) -> (Vec<u8>, usize) {
    match storage {
        CpuStorage::U8(v) => (v.clone(), 1),
        CpuStorage::U32(v) => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), 4),
        CpuStorage::F32(v) => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), 4),
        CpuStorage::BF16(v) => (
            v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            2,
        ),
        other => panic!(
            "kernel emulator: {:?} inputs are not supported",
            other.dtype()
        ),
    }
}

fn storage(dtype: DType, raw: &[u8]) -> CpuStorage {
    match dtype {
        DType::U32 => CpuStorage::U32(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::F32 => CpuStorage::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::BF16 => CpuStorage::BF16(
            raw.chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        other => panic!("kernel emulator: {other:?} outputs are not supported"),
    }
}

/// The storage behind a CPU tensor (the whole buffer, as a kernel sees it; views keep their
/// offsets in their layouts).
pub fn cpu_storage(t: &Tensor) -> CpuStorage {
    let (storage, _) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => s.clone(),
        _ => panic!("kernel emulator: tensors must be on the CPU"),
    }
}

/// Runs an op's `launches` in order on `inputs` (indexed as their `Arg::Input`s say) in the
/// emulator and returns the output; panics with the harness's message when a launch is
/// wrong.
pub fn run(launches: &[Launch], inputs: &[CpuStorage]) -> CpuStorage {
    try_run(launches, inputs).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run`], with the harness's complaint as the error.
pub fn try_run(launches: &[Launch], inputs: &[CpuStorage]) -> Result<CpuStorage, String> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let exe = harness().as_ref().expect("kernel emulator");
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = exe.with_file_name(format!("run-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("run folder");
    let result = run_in(exe, &dir, launches, inputs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    exe: &Path,
    dir: &Path,
    launches: &[Launch],
    inputs: &[CpuStorage],
) -> Result<CpuStorage, String> {
    let (dtype, _) = output_of(launches).map_err(|e| e.to_string())?;
    let out_file = dir.join("out");
    // Scratch slots live in files between launches: written by the first launch naming one,
    // read and written by the later ones.
    let mut slots_seen = std::collections::HashSet::new();
    for (step, launch) in launches.iter().enumerate() {
        let mut spec = format!(
            "kernel {}\ngrid {} {} {}\nblock {} {} {}\n",
            launch.kernel,
            launch.grid.0,
            launch.grid.1,
            launch.grid.2,
            launch.block.0,
            launch.block.1,
            launch.block.2
        );
        for arg in &launch.args {
            let line = match arg {
                Arg::Input { index, offset } => {
                    let (raw, size) = bytes(&inputs[*index]);
                    let file = dir.join(format!("in{index}"));
                    std::fs::write(&file, raw).map_err(|e| format!("input file: {e}"))?;
                    format!("in {} {size} {offset}", file.display())
                }
                Arg::Output { dtype, len } => {
                    format!("out {} {}", out_file.display(), len * dtype.size_in_bytes())
                }
                Arg::Scratch { slot, len } => {
                    let file = dir.join(format!("scratch{slot}"));
                    if slots_seen.insert(*slot) {
                        format!("out {} {}", file.display(), len * 4)
                    } else {
                        format!("inout {}", file.display())
                    }
                }
                Arg::I32(v) => format!("i32 {v}"),
                Arg::I64(v) => format!("i64 {v}"),
                Arg::F32(v) => format!("f32 {}", v.to_bits()),
            };
            spec.push_str(&line);
            spec.push('\n');
        }
        let spec_file = dir.join(format!("spec{step}"));
        std::fs::write(&spec_file, spec).map_err(|e| format!("spec file: {e}"))?;
        let output = Command::new(exe)
            .arg(&spec_file)
            .output()
            .map_err(|e| format!("kernel emulator: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "kernel {} in the emulator ({}): {}",
                launch.kernel,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let raw = std::fs::read(&out_file).map_err(|e| format!("output file: {e}"))?;
    Ok(storage(dtype, &raw))
}

/// The largest |a - b| over two outputs of the same dtype and length (NaN where exactly one
/// of the pair is NaN, 0 where both are).
pub fn max_diff(a: &CpuStorage, b: &CpuStorage) -> f32 {
    let values = |s: &CpuStorage| -> Vec<f32> {
        match s {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            CpuStorage::U32(v) => v.iter().map(|&x| x as f32).collect(),
            other => panic!("{:?}", other.dtype()),
        }
    };
    assert_eq!(a.dtype(), b.dtype(), "output dtypes");
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len(), "output lengths");
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(&b) {
        match (x.is_nan(), y.is_nan()) {
            (true, true) => {}
            (false, false) => worst = worst.max((x - y).abs()),
            _ => return f32::NAN,
        }
    }
    worst
}

//! With `--features cuda`: compiles ossterm's kernels (src/model/kernels/*.cu) to PTX with nvcc,
//! for the architecture in CUDA_COMPUTE_CAP (as candle's kernels are). Nothing otherwise.

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &[&str] = &["q4_0_moe", "attention", "dense"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    if let Err(message) = compile_kernels() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn compile_kernels() -> Result<(), String> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let cap = std::env::var("CUDA_COMPUTE_CAP").map_err(|_| {
        "CUDA_COMPUTE_CAP is not set: set it to the GPU's compute capability (90 for H100), \
         or build with scripts/build-cuda.sh"
            .to_string()
    })?;
    let cap: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let nvcc = match std::env::var_os("CUDA_HOME") {
        Some(home) => PathBuf::from(home).join("bin/nvcc"),
        None => PathBuf::from("nvcc"),
    };
    for name in KERNELS {
        let source = format!("src/model/kernels/{name}.cu");
        println!("cargo:rerun-if-changed={source}");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(&source)
            .arg("-o")
            .arg(&ptx)
            .status()
            .map_err(|e| format!("cannot run {} ({e}): set CUDA_HOME", nvcc.display()))?;
        if !status.success() {
            return Err(format!("nvcc failed on {source}"));
        }
    }
    Ok(())
}

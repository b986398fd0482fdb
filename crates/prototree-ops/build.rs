//! Under the `cuda` feature: compiles `kernels/tree_head.cu` to PTX with nvcc (as
//! candle-kernels does for candle's own kernels), into `$OUT_DIR/tree_head.ptx`, which
//! `src/cuda.rs` embeds. Without the feature it does nothing.
//!
//! nvcc: `$NVCC`, else `$CUDA_ROOT/bin/nvcc` (or `$CUDA_HOME`, `$CUDA_PATH`), else `nvcc`
//! on `PATH`. Target: `compute_$CUDA_COMPUTE_CAP` PTX (default 80), which the driver
//! compiles for the GPU at first use (PTX for 8.0 runs on every later GPU too).

use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "kernels/tree_head.cu";

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    for root in ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"] {
        if let Some(r) = std::env::var_os(root) {
            let p = PathBuf::from(r).join("bin").join("nvcc");
            if p.exists() {
                return p;
            }
        }
    }
    PathBuf::from("nvcc")
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let cap: String = std::env::var("CUDA_COMPUTE_CAP")
        .unwrap_or_else(|_| "80".into())
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let cap = if cap.is_empty() {
        "80".to_string()
    } else {
        cap
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        eprintln!("OUT_DIR is not set");
        std::process::exit(1);
    };
    let out = PathBuf::from(out_dir).join("tree_head.ptx");
    let nvcc = nvcc();
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg(SOURCE)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("{} failed on {SOURCE} ({s})", nvcc.display());
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!(
                "cannot run {} ({e}): the `cuda` feature needs nvcc (set NVCC or CUDA_ROOT; scripts/cuda-toolkit.sh)",
                nvcc.display()
            );
            std::process::exit(1);
        }
    }
}

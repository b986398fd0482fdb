//! Parsing `--device` values.

use candle_core::Device;

use crate::{Error, Result};

/// `cpu` or `cuda:N` (`cuda` = `cuda:0`). CUDA needs a build with the `cuda` feature.
pub fn candle_device(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::Invalid(format!("bad device `{spec}` (expected cpu or cuda:N)"))
            })?,
        None => {
            return Err(Error::Invalid(format!(
                "bad device `{spec}` (expected cpu or cuda:N)"
            )))
        }
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::Invalid(format!(
            "device `{spec}`: this build has no CUDA support (rebuild with `--features cuda`, see docs/cuda.md)"
        )));
    }
    Ok(Device::new_cuda(ordinal)?)
}

/// The `--device` spelling of a device: `cpu`, `cuda:N` or `metal:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert!(matches!(candle_device("cpu"), Ok(Device::Cpu)));
        assert!(candle_device("gpu").is_err());
        assert!(candle_device("cuda:x").is_err());
        assert_eq!(device_name(&Device::Cpu), "cpu");
    }
}

//! Recognising device out-of-memory failures, so that training can say what to do.
//!
//! candle reports a CUDA allocation failure as an opaque driver or cuBLAS error deep
//! inside a tensor operation. During training the cure is almost always a smaller
//! batch, so [`advise_on_out_of_memory`] turns such an error into
//! [`Error::OutOfMemory`], which names the batch size in use and a smaller one to try.
//! Any other error passes through unchanged.

use crate::Error;

/// Fragments of the messages with which CUDA, cuBLAS and cuDNN report a failed allocation.
const OUT_OF_MEMORY_MARKERS: [&str; 4] = [
    "out of memory",
    "out_of_memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
];

/// Whether an error message describes a device running out of memory.
pub fn is_out_of_memory_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    OUT_OF_MEMORY_MARKERS.iter().any(|m| lower.contains(m))
}

/// Replaces an out-of-memory error by [`Error::OutOfMemory`] with advice for `batch_size`
/// on `device` (e.g. `"cuda:0"`); returns every other error unchanged.
pub fn advise_on_out_of_memory(error: Error, batch_size: usize, device: &str) -> Error {
    if matches!(error, Error::OutOfMemory { .. }) {
        return error;
    }
    let message = error.to_string();
    if !is_out_of_memory_message(&message) {
        return error;
    }
    Error::OutOfMemory {
        device: device.to_string(),
        batch_size,
        suggested_batch_size: (batch_size / 2).max(1),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle_error(msg: &str) -> Error {
        Error::Tree(prototree_tree::Error::Candle(candle_core::Error::Msg(
            msg.to_string(),
        )))
    }

    #[test]
    fn cuda_and_cublas_allocation_failures_are_recognised() {
        for msg in [
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "cublas error: CUBLAS_STATUS_ALLOC_FAILED",
            "CUDNN_STATUS_ALLOC_FAILED",
        ] {
            assert!(is_out_of_memory_message(msg), "{msg}");
        }
        assert!(!is_out_of_memory_message("shape mismatch in matmul"));
    }

    #[test]
    fn advice_names_the_batch_size_and_a_smaller_one() {
        let err = advise_on_out_of_memory(
            candle_error("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"),
            64,
            "cuda:0",
        );
        match &err {
            Error::OutOfMemory {
                batch_size,
                suggested_batch_size,
                device,
                ..
            } => {
                assert_eq!((*batch_size, *suggested_batch_size), (64, 32));
                assert_eq!(device, "cuda:0");
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("--batch-size 32"), "{text}");
        assert!(text.contains("--resume"), "{text}");
    }

    #[test]
    fn other_errors_pass_through_and_batch_one_stays_one() {
        let err = advise_on_out_of_memory(candle_error("shape mismatch"), 64, "cuda:0");
        assert!(matches!(err, Error::Tree(_)));
        let err = advise_on_out_of_memory(candle_error("out of memory"), 1, "cuda:0");
        assert!(matches!(
            err,
            Error::OutOfMemory {
                suggested_batch_size: 1,
                ..
            }
        ));
    }
}

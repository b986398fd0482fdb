//! Our reader agrees with candle's PyTorch reader on a zip-format `torch.save` file, and a
//! pickled module names its tensors as its state dict does.

use std::path::Path;

use anyhow::{Context, Result};
use prototree_torch::{FileFormat, TorchFile};

/// Our reader of `torch.save` archives agrees with candle's on every tensor.
#[test]
fn own_reader_matches_candle() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference/smallcnn_d3");
    let path = dir.join("model_state.pth");
    let file = TorchFile::open(&path)?;
    assert_eq!(file.format(), FileFormat::Zip);
    let entries = file.state_dict_entries(file.root())?;
    let (ours, skipped) = file.tensors(&entries)?;
    assert!(skipped.is_empty());
    let theirs = candle_core::pickle::read_all(&path)?;
    assert_eq!(ours.len(), theirs.len());
    for (name, t) in theirs {
        let o = ours.get(&name).with_context(|| name.clone())?;
        assert_eq!(o.dims(), t.dims(), "{name}");
        assert_eq!(o.dtype(), t.dtype(), "{name}");
        let diff = (o.to_dtype(candle_core::DType::F64)? - t.to_dtype(candle_core::DType::F64)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        assert_eq!(diff, 0.0, "{name}");
    }
    // The whole module in model.pth names its tensors as the state dict does.
    let module = TorchFile::open(&dir.join("model.pth"))?;
    let mut names: Vec<String> = module
        .module_entries(module.root())?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut state: Vec<String> = entries.into_iter().map(|(n, _)| n).collect();
    names.sort();
    state.sort();
    assert_eq!(names, state);
    Ok(())
}

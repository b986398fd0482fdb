//! Writes a contact sheet of synthetic birds (rows = classes, columns = images), upscaled,
//! to look at the data: `cargo run --release -p prototree-data --example synth_preview -- OUT.png [CLASSES] [PER_ROW] [SIZE]`.

use image::{imageops, RgbImage};
use prototree_data::{generate, CubDataset, Split, SynthConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .cloned()
        .unwrap_or_else(|| "synth_preview.png".into());
    let classes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(6);
    let per_row: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let size: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let cfg = SynthConfig {
        classes,
        per_class: per_row.max(2),
        size,
        seed: 0,
        train_fraction: 0.5,
        ..Default::default()
    };
    generate(&cfg, dir.path(), &mut |_, _| {})?;
    let ds = CubDataset::open(dir.path())?;
    let zoom = 3;
    let cell = size * zoom;
    let mut sheet = RgbImage::new(cell * per_row as u32, cell * classes as u32);
    for s in ds.samples(Split::All) {
        let col = (s.image_id as usize - 1) % cfg.per_class;
        if col >= per_row {
            continue;
        }
        let img = prototree_data::load_rgb(&s.path)?;
        let big = imageops::resize(&img, cell, cell, imageops::FilterType::Nearest);
        imageops::replace(
            &mut sheet,
            &big,
            (col as u32 * cell) as i64,
            (s.class_index as u32 * cell) as i64,
        );
    }
    sheet.save(&out)?;
    for (i, n) in ds.class_names().iter().enumerate() {
        println!("row {i}: {n}");
    }
    Ok(())
}

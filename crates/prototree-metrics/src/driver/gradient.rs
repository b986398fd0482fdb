//! The gradient-box pass ([`crate::gradient_box`]): per image and prototype on its
//! predicted path, the parts in the box of the patch's size where the prototype's
//! similarity depends most on the pixels, on the plain and on the noisy images (for
//! stability).

use std::collections::HashMap;

use prototree_tree::Observer;

use super::activations::{noisy_chw, Activations};
use super::TestSet;
use crate::gradient_box::{best_window, input_gradient_maps, GradientSmoothing};
use crate::metrics::Phase;
use crate::parts::PartSet;
use crate::Result;

/// What the gradient-box pass finds, per image and prototype (decision row order).
pub(super) struct GradientParts {
    pub clean: Vec<Vec<PartSet>>,
    pub noisy: Vec<Vec<PartSet>>,
}

/// Pass: the gradient box of each prototype on each test image whose predicted path shows
/// it (the images consistency and stability use), plain and with the stability noise
/// ([`Phase::GradientBoxes`]); other (image, prototype) pairs are left empty. Each box has
/// the size of the image's patch box for that prototype; the gradients are averaged over
/// `cfg.gradient_box_samples` noisy copies (1: the plain gradient).
pub(super) fn gradient_pass(
    test: &TestSet,
    acts: &Activations,
    obs: &mut dyn Observer,
) -> Result<GradientParts> {
    let n = test.num_images();
    let rows = &test.rows;
    let mut out = GradientParts {
        clean: vec![vec![PartSet::default(); rows.len()]; n],
        noisy: vec![vec![PartSet::default(); rows.len()]; n],
    };
    // Decision row (heap index) → prototype index in `rows`.
    let index_of: HashMap<usize, usize> = rows.iter().enumerate().map(|(ri, &r)| (r, ri)).collect();
    let size = test.size as usize;
    let cfg = test.cfg;
    let copies = cfg.gradient_box_samples.max(1);
    // Images per pass: a metrics batch's worth of inputs, copies included.
    let per_pass = (cfg.batch_size / copies).max(1);
    Phase::GradientBoxes.started(obs, test.chunks.len());
    for (ci, batch) in test.chunks.iter().enumerate() {
        for chunk in batch.chunks(per_pass) {
            // Each image's path: its rows and their prototype indices.
            let paths: Vec<Vec<(usize, usize)>> = chunk
                .iter()
                .map(|&i| {
                    acts.routed[i]
                        .steps
                        .iter()
                        .filter_map(|s| index_of.get(&s.row).map(|&ri| (s.row, ri)))
                        .collect()
                })
                .collect();
            let rows_per_image: Vec<Vec<usize>> = paths
                .iter()
                .map(|p| p.iter().map(|(row, _)| *row).collect())
                .collect();
            let clean = test.chw_of(&test.images(chunk)?);
            let noisy = noisy_chw(test, chunk)?;
            for (chw, target) in [(clean, &mut out.clean), (noisy, &mut out.noisy)] {
                let smoothing = GradientSmoothing {
                    samples: copies,
                    // One copy: the plain gradient.
                    sigma: if copies > 1 {
                        cfg.smoothgrad_sigma
                    } else {
                        0.0
                    },
                    seed: cfg.seed ^ 0x6b0c ^ ((chunk[0] as u64) << 16),
                };
                let maps = input_gradient_maps(
                    test.model,
                    &chw,
                    size,
                    &rows_per_image,
                    &smoothing,
                    test.device,
                )?;
                for ((&i, path), per_step) in chunk.iter().zip(&paths).zip(&maps) {
                    for (&(_, ri), map) in path.iter().zip(per_step) {
                        let patch = acts.grid.box_of(acts.acts[i][ri].cell);
                        let (w, h) = (
                            (patch[2] - patch[0]) as usize,
                            (patch[3] - patch[1]) as usize,
                        );
                        let b = best_window(map, size, w, h);
                        target[i][ri] = test.anns[i].region(b, cfg.min_part_share).parts;
                    }
                }
            }
        }
        obs.stage_progress(ci + 1);
    }
    Phase::GradientBoxes.finished(obs);
    Ok(out)
}

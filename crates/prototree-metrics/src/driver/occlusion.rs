//! The occlusion-box pass ([`crate::occlusion_box`]): per image and prototype on its
//! predicted path, the parts in the box of the patch's size whose occlusion lowers the
//! prototype's similarity the most, on the plain and on the noisy images (for stability).

use std::collections::HashMap;

use prototree_tree::Observer;

use super::activations::{noisy_chw, Activations};
use super::TestSet;
use crate::input_gradients::best_window;
use crate::metrics::Phase;
use crate::occlusion_box::{occlusion_maps, Occluder};
use crate::parts::PartSet;
use crate::Result;

/// What the occlusion-box pass finds, per image and prototype (decision row order).
pub(super) struct OcclusionParts {
    pub clean: Vec<Vec<PartSet>>,
    pub noisy: Vec<Vec<PartSet>>,
}

/// Pass: the occlusion box of each prototype on each test image whose predicted path shows
/// it (the images consistency and stability use), plain and with the stability noise
/// ([`Phase::OcclusionBoxes`]); other (image, prototype) pairs are left empty. Each box has
/// the size of the image's patch box for that prototype and is the best window of the
/// image's occlusion map ([`occlusion_maps`], a square of the largest of the image's
/// patch boxes, stepped by half its side).
pub(super) fn occlusion_pass(
    test: &TestSet,
    acts: &Activations,
    obs: &mut dyn Observer,
) -> Result<OcclusionParts> {
    let n = test.num_images();
    let rows = &test.rows;
    let mut out = OcclusionParts {
        clean: vec![vec![PartSet::default(); rows.len()]; n],
        noisy: vec![vec![PartSet::default(); rows.len()]; n],
    };
    // Decision row (heap index) → prototype index in `rows`.
    let index_of: HashMap<usize, usize> = rows.iter().enumerate().map(|(ri, &r)| (r, ri)).collect();
    let size = test.size as usize;
    let cfg = test.cfg;
    Phase::OcclusionBoxes.started(obs, test.chunks.len());
    for (ci, chunk) in test.chunks.iter().enumerate() {
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
        let occluders: Vec<Occluder> = chunk
            .iter()
            .zip(&paths)
            .map(|(&i, path)| {
                Occluder::covering(
                    path.iter()
                        .map(|&(_, ri)| acts.grid.box_of(acts.acts[i][ri].cell)),
                )
            })
            .collect();
        let clean = test.chw_of(&test.images(chunk)?);
        let noisy = noisy_chw(test, chunk)?;
        for (chw, target) in [(clean, &mut out.clean), (noisy, &mut out.noisy)] {
            let maps = occlusion_maps(
                test.model,
                &chw,
                size,
                &rows_per_image,
                &occluders,
                cfg.batch_size,
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
        obs.stage_progress(ci + 1);
    }
    Phase::OcclusionBoxes.finished(obs);
    Ok(out)
}

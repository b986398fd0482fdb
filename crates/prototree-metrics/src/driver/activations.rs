//! The passes over the plain and the noisy test images: where each prototype matches.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::{BatchResult, Routed};
use super::{argmax, Grid, TestSet};
use crate::metrics::Phase;
use crate::parts::PartSet;
use crate::perturb::standard_normal;
use crate::Result;
use prototree_tree::Observer;

/// One prototype's activation on one image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activation {
    pub similarity: f32,
    /// The latent cell of the nearest patch.
    pub cell: usize,
    /// The annotated parts inside that patch's box.
    pub parts: PartSet,
}

/// A candidate among a prototype's top activations.
#[derive(Debug, Clone)]
pub(super) struct TopActivation {
    pub similarity: f32,
    pub image: usize,
    pub map: Vec<f32>,
}

/// What the plain pass finds.
pub(super) struct Activations {
    /// Per image, per prototype (decision row order).
    pub acts: Vec<Vec<Activation>>,
    /// Per image, its greedy and soft prediction.
    pub routed: Vec<Routed>,
    /// Per prototype, its `top_k` most similar images, best first.
    pub top: Vec<Vec<TopActivation>>,
    pub grid: Grid,
}

/// Pass 1: activations, greedy paths and each prototype's top-k maps
/// ([`Phase::Activations`]).
pub(super) fn activation_pass(test: &TestSet, obs: &mut dyn Observer) -> Result<Activations> {
    let n_rows = test.rows.len();
    let mut out = Activations {
        acts: Vec::with_capacity(test.num_images()),
        routed: Vec::with_capacity(test.num_images()),
        top: vec![Vec::new(); n_rows],
        grid: Grid {
            fh: 1,
            fw: 1,
            size: test.size,
        },
    };
    Phase::Activations.started(obs, test.chunks.len());
    for (ci, chunk) in test.chunks.iter().enumerate() {
        let res = test.run_images(&test.images(chunk)?)?;
        out.grid = Grid {
            fh: res.fh,
            fw: res.fw,
            size: test.size,
        };
        for (bi, &i) in chunk.iter().enumerate() {
            let per_row = test
                .rows
                .iter()
                .enumerate()
                .map(|(ri, &row)| out.record(test, &res, bi, i, ri, row))
                .collect();
            out.acts.push(per_row);
        }
        out.routed.extend(res.routed);
        obs.stage_progress(ci + 1);
    }
    Phase::Activations.finished(obs);
    Ok(out)
}

impl Activations {
    /// The activation of prototype `ri` (row `row`) on image `i` (`bi` in the batch), kept
    /// among the prototype's top-k when it is one of them.
    fn record(
        &mut self,
        test: &TestSet,
        res: &BatchResult,
        bi: usize,
        i: usize,
        ri: usize,
        row: usize,
    ) -> Activation {
        let map = res.map(bi, row);
        let cell = argmax(map);
        let region = test.anns[i].region(self.grid.box_of(cell), test.cfg.min_part_share);
        let similarity = map[cell];
        let top_k = test.cfg.top_k;
        let t = &mut self.top[ri];
        if t.len() < top_k || t.last().is_some_and(|l| similarity > l.similarity) {
            let pos = t
                .iter()
                .position(|x| similarity > x.similarity)
                .unwrap_or(t.len());
            t.insert(
                pos,
                TopActivation {
                    similarity,
                    image: i,
                    map: map.to_vec(),
                },
            );
            t.truncate(top_k);
        }
        Activation {
            similarity,
            cell,
            parts: region.parts,
        }
    }
}

/// Normalised CHW floats of test images `chunk` with the stability noise: seeded Gaussian
/// noise per image (`cfg.noise_sigma`, clipped to ±`cfg.noise_clip`).
pub(super) fn noisy_chw(test: &TestSet, chunk: &[usize]) -> Result<Vec<f32>> {
    let cfg = test.cfg;
    let mut chw = test.chw_of(&test.images(chunk)?);
    for (o, &i) in chw.chunks_exact_mut(test.plane()).zip(chunk) {
        let mut rng = ChaCha8Rng::seed_from_u64(
            cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        for v in o.iter_mut() {
            *v += (cfg.noise_sigma * standard_normal(&mut rng))
                .clamp(-cfg.noise_clip, cfg.noise_clip);
        }
    }
    Ok(chw)
}

/// Pass 2: the parts each prototype matches under seeded Gaussian noise on the normalised
/// input ([`Phase::Noise`]); per image, per prototype.
pub(super) fn noise_pass(
    test: &TestSet,
    grid: &Grid,
    obs: &mut dyn Observer,
) -> Result<Vec<Vec<PartSet>>> {
    let cfg = test.cfg;
    let mut noisy: Vec<Vec<PartSet>> = Vec::with_capacity(test.num_images());
    Phase::Noise.started(obs, test.chunks.len());
    for (ci, chunk) in test.chunks.iter().enumerate() {
        let res = test.run(noisy_chw(test, chunk)?, chunk.len())?;
        for (bi, &i) in chunk.iter().enumerate() {
            noisy.push(
                test.rows
                    .iter()
                    .map(|&row| {
                        let cell = argmax(res.map(bi, row));
                        test.anns[i]
                            .region(grid.box_of(cell), cfg.min_part_share)
                            .parts
                    })
                    .collect(),
            );
        }
        obs.stage_progress(ci + 1);
    }
    Phase::Noise.finished(obs);
    Ok(noisy)
}

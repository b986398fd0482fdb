//! The passes over edited images: deletion of matched patches on the greedy path, and the
//! perturbation analysis of each prototype's top images.

use std::collections::HashMap;

use super::activations::Activations;
use super::TestSet;
use crate::faithfulness::{summarize_deletions, Deletion, DeletionSummary};
use crate::metrics::Phase;
use crate::perturb::{perturb, Area, Perturbation};
use crate::Result;
use prototree_tree::Observer;

/// Similarity drops `(inside, outside)` keyed by (prototype, perturbation, image).
pub(super) type Drops = HashMap<(usize, Perturbation, usize), (f64, f64)>;

/// Deletion ([`Phase::Deletion`]): fills the matched patch of each "present" decision
/// with the mean colour and records whether the decision and the prediction change.
pub(super) fn deletion_pass(
    test: &TestSet,
    acts: &Activations,
    obs: &mut dyn Observer,
) -> Result<DeletionSummary> {
    let row_index: HashMap<usize, usize> = test
        .rows
        .iter()
        .enumerate()
        .map(|(ri, &r)| (r, ri))
        .collect();
    let mut jobs: Vec<(usize, usize, f32)> = Vec::new(); // (image, row, similarity before)
    for (i, r) in acts.routed.iter().enumerate() {
        for s in r.steps.iter().filter(|s| s.present) {
            jobs.push((i, s.row, s.similarity));
        }
    }
    let job_chunks: Vec<&[(usize, usize, f32)]> = jobs.chunks(test.cfg.batch_size).collect();
    let mut deletions = Vec::with_capacity(jobs.len());
    Phase::Deletion.started(obs, job_chunks.len());
    for (ci, chunk) in job_chunks.iter().enumerate() {
        let mut imgs = Vec::with_capacity(chunk.len());
        for &(i, row, _) in chunk.iter() {
            let ri = row_index[&row];
            let b = acts.grid.box_of(acts.acts[i][ri].cell);
            imgs.push(perturb(
                &test.image(i)?,
                Perturbation::MeanFill,
                b,
                Area::Inside,
                0,
            ));
        }
        let res = test.run_images(&imgs)?;
        for (&(i, row, before), after) in chunk.iter().zip(&res.routed) {
            deletions.push(Deletion {
                class_changed: after.greedy_class != acts.routed[i].greedy_class,
                similarity_before: before,
                similarity_after: after.routing[row],
            });
        }
        obs.stage_progress(ci + 1);
    }
    Phase::Deletion.finished(obs);
    Ok(summarize_deletions(&deletions))
}

/// Perturbation analysis ([`Phase::Perturbation`]): each analysis perturbation inside and
/// outside the matched patch of each prototype's top-k images.
pub(super) fn perturbation_pass(
    test: &TestSet,
    acts: &Activations,
    obs: &mut dyn Observer,
) -> Result<Drops> {
    let cfg = test.cfg;
    let mut jobs: Vec<(usize, usize, Perturbation, Area, f32)> = Vec::new();
    for (ri, t) in acts.top.iter().enumerate() {
        for a in t {
            for p in Perturbation::ANALYSIS {
                for area in [Area::Inside, Area::Outside] {
                    jobs.push((ri, a.image, p, area, a.similarity));
                }
            }
        }
    }
    let job_chunks: Vec<_> = jobs.chunks(cfg.batch_size).collect();
    let mut drops = Drops::new();
    Phase::Perturbation.started(obs, job_chunks.len());
    for (ci, chunk) in job_chunks.iter().enumerate() {
        let mut imgs = Vec::with_capacity(chunk.len());
        for &(ri, i, p, area, _) in chunk.iter() {
            let b = acts.grid.box_of(acts.acts[i][ri].cell);
            let seed = cfg.seed ^ ((i as u64) << 20) ^ ((ri as u64) << 4) ^ 0xbeef;
            imgs.push(perturb(&test.image(i)?, p, b, area, seed));
        }
        let res = test.run_images(&imgs)?;
        for (&(ri, i, p, area, before), after) in chunk.iter().zip(&res.routed) {
            let drop = f64::from(before - after.routing[test.rows[ri]]);
            let e = drops.entry((ri, p, i)).or_insert((0.0, 0.0));
            match area {
                Area::Inside => e.0 = drop,
                Area::Outside => e.1 = drop,
            }
        }
        obs.stage_progress(ci + 1);
    }
    Phase::Perturbation.finished(obs);
    Ok(drops)
}

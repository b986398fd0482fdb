//! Pruning and projection of a model bundle: the operations and the bundle's
//! bookkeeping (stage, projection records) in one call, so the two cannot disagree.

use prototree_tree::topology::NodeId;
use prototree_tree::{BatchSource, ProjectionRecord, SavedModel};

use crate::project::{project_with, ProjectionRule};
use crate::{collapse_constant_decisions, merge_same_class_decisions, prune, PruneReport, Result};

/// Pruning and projection as methods of a [`SavedModel`].
///
/// ```no_run
/// use prototree_interpret::Interpret;
/// # fn run(saved: &mut prototree_tree::SavedModel) -> prototree_interpret::Result<()> {
/// let report = saved.prune(0.01)?;
/// println!("{} → {} decisions, now {}", report.decisions_before, report.decisions_after, saved.stage());
/// # Ok(()) }
/// ```
pub trait Interpret {
    /// Prunes subtrees whose leaves are all near-uniform (max probability ≤ `tau`) and drops
    /// the projection records of removed nodes.
    fn prune(&mut self, tau: f32) -> Result<PruneReport>;

    /// Merges decisions whose leaves all predict one class ([`crate::merge`]) and drops
    /// the projection records of the merged nodes; returns them.
    fn merge_same_class(&mut self) -> Result<Vec<NodeId>>;

    /// Collapses decisions every image of `source` answers alike ([`crate::collapse`])
    /// and drops the projection records of the collapsed nodes; returns them.
    /// `progress(done, total)` counts batches.
    fn collapse_constant(
        &mut self,
        source: &mut dyn BatchSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<NodeId>>;

    /// Projects every decision prototype onto an allowed training patch of `source`
    /// chosen by `rule` (image `i` named `image_paths[i]`; `source` must not shuffle) and
    /// keeps the records; `progress(done, total)` counts batches.
    fn project(
        &mut self,
        source: &mut dyn BatchSource,
        image_paths: &[String],
        rule: ProjectionRule,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<&[ProjectionRecord]>;
}

impl Interpret for SavedModel {
    fn prune(&mut self, tau: f32) -> Result<PruneReport> {
        let report = prune(&mut self.model, tau)?;
        self.record_pruning();
        Ok(report)
    }

    fn merge_same_class(&mut self) -> Result<Vec<NodeId>> {
        let merged = merge_same_class_decisions(&mut self.model)?;
        if !merged.is_empty() {
            self.record_pruning();
        }
        Ok(merged)
    }

    fn collapse_constant(
        &mut self,
        source: &mut dyn BatchSource,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<NodeId>> {
        let collapsed = collapse_constant_decisions(&mut self.model, source, progress)?;
        if !collapsed.is_empty() {
            self.record_pruning();
        }
        Ok(collapsed)
    }

    fn project(
        &mut self,
        source: &mut dyn BatchSource,
        image_paths: &[String],
        rule: ProjectionRule,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<&[ProjectionRecord]> {
        let records = project_with(&mut self.model, source, image_paths, rule, progress)?;
        self.record_projection(records)?;
        Ok(self.projections())
    }
}

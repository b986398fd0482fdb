//! Inference modes (spec §5): soft (all paths), greedy (follow the larger routing
//! probability), max-leaf (the leaf with the highest path probability), and fidelity.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::TreeOutput;
use crate::topology::{BranchState, Direction, NodeId, Topology};
use crate::Result;
use prototree_ops::GreedyBranch;

/// How a prediction routes through the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Weighted average of all leaves by path probability (training output).
    #[default]
    Soft,
    /// From the root, go right ("present") iff the similarity is above 0.5.
    Greedy,
    /// The leaf with the highest path probability.
    MaxLeaf,
}

impl Routing {
    /// The mode's name on the command line (`soft`, `greedy`, `max-leaf`).
    pub fn name(self) -> &'static str {
        match self {
            Routing::Soft => "soft",
            Routing::Greedy => "greedy",
            Routing::MaxLeaf => "max-leaf",
        }
    }
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Routing {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "soft" => Ok(Routing::Soft),
            "greedy" => Ok(Routing::Greedy),
            "max-leaf" | "max_leaf" | "sample_max" => Ok(Routing::MaxLeaf),
            other => Err(format!(
                "unknown routing `{other}` (expected soft, greedy or max-leaf)"
            )),
        }
    }
}

/// One decision on a greedy path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PathStep {
    /// The decision node (reference numbering).
    pub node: NodeId,
    /// Heap index of the node (= prototype row).
    pub heap: usize,
    /// Similarity of the node's prototype to the image's nearest patch.
    pub similarity: f32,
    /// Whether the path went right ("present").
    pub present: bool,
}

/// The class chosen by each routing mode for each image of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decisions {
    /// Soft-routing class per image.
    pub soft: Vec<usize>,
    /// Greedy-routing class per image.
    pub greedy: Vec<usize>,
    /// Max-leaf class per image.
    pub max_leaf: Vec<usize>,
    /// Leaf (left-to-right index) reached greedily per image.
    pub greedy_leaf: Vec<usize>,
    /// Leaf with the highest path probability per image.
    pub max_leaf_leaf: Vec<usize>,
    /// Number of real decisions on each greedy path.
    pub greedy_path_len: Vec<usize>,
}

/// Index of the largest value (the first on ties; 0 for an empty row).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// The greedy path for one image from its effective routing row (heap order).
pub fn greedy_path(topology: &Topology, routing_row: &[f32]) -> (usize, Vec<PathStep>) {
    let mut h = 0usize;
    let mut steps = Vec::new();
    for _ in 0..topology.depth() {
        let s = routing_row[h];
        let right = s > 0.5;
        if topology.branch_state(h) == BranchState::Decision {
            steps.push(PathStep {
                node: topology.node_id(h),
                heap: h,
                similarity: s,
                present: right,
            });
        }
        h = if right { 2 * h + 2 } else { 2 * h + 1 };
    }
    (h - topology.num_branches(), steps)
}

/// Greedy paths of a batch, computing only the prototypes met on each image's path
/// (`depth` prototype distances per image instead of `2^depth − 1`; pass-throughs of a
/// pruned tree cost nothing), on any device: [`prototree_ops::greedy_paths`]. Same
/// distances as the soft forward up to float rounding. Returns the reached leaf
/// (left-to-right index) and the decisions on the way.
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(P, d)` (rows in heap order)
pub fn greedy_paths_path_only(
    topology: &Topology,
    patches: &Tensor,
    prototypes: &Tensor,
) -> Result<Vec<(usize, Vec<PathStep>)>> {
    let (_, _, d) = patches.dims3()?;
    let (p, d2) = prototypes.dims2()?;
    if d != d2 || p < topology.num_branches() {
        return Err(crate::Error::ShapeMismatch {
            tensor: "prototypes".into(),
            expected: vec![topology.num_branches(), d],
            got: vec![p, d2],
        });
    }
    let branches: Vec<GreedyBranch> = topology
        .branch_states()
        .iter()
        .map(|s| match s {
            BranchState::Decision => GreedyBranch::Decide,
            BranchState::PassRight => GreedyBranch::Right,
            BranchState::PassLeft | BranchState::Removed => GreedyBranch::Left,
        })
        .collect();
    let paths = prototree_ops::greedy_paths(patches, prototypes, &branches)?;
    Ok(paths
        .into_iter()
        .map(|path| {
            let steps = path
                .decisions
                .iter()
                .map(|d| PathStep {
                    node: topology.node_id(d.heap),
                    heap: d.heap,
                    similarity: d.similarity,
                    present: d.present(),
                })
                .collect();
            (path.leaf, steps)
        })
        .collect())
}

/// Classes of all three routing modes from one forward pass.
///
/// `leaf_classes[l]` is the top class of leaf `l`.
pub fn decide(topology: &Topology, out: &TreeOutput, leaf_classes: &[usize]) -> Result<Decisions> {
    let probs = out.probabilities.to_vec2::<f32>()?;
    let paths = out.leaf_path_probs.to_vec2::<f32>()?;
    let routing = out.routing.to_vec2::<f32>()?;
    let mut d = Decisions::default();
    for ((p, pi), r) in probs.iter().zip(&paths).zip(&routing) {
        d.soft.push(argmax(p));
        let ml = argmax(pi);
        d.max_leaf_leaf.push(ml);
        d.max_leaf.push(leaf_classes[ml]);
        let (leaf, steps) = greedy_path(topology, r);
        d.greedy_leaf.push(leaf);
        d.greedy.push(leaf_classes[leaf]);
        d.greedy_path_len.push(steps.len());
    }
    Ok(d)
}

/// Top class of every leaf from the leaf distributions `(L, k)`.
pub fn leaf_top_classes(distributions: &Tensor) -> Result<Vec<usize>> {
    Ok(distributions
        .to_vec2::<f32>()?
        .iter()
        .map(|r| argmax(r))
        .collect())
}

/// The directions of a greedy path, for display.
pub fn directions(steps: &[PathStep]) -> Vec<Direction> {
    steps
        .iter()
        .map(|s| {
            if s.present {
                Direction::Right
            } else {
                Direction::Left
            }
        })
        .collect()
}

/// Accuracy, fidelity and path statistics over a data set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Number of images.
    pub num_images: usize,
    /// Soft-routing accuracy.
    pub accuracy_soft: f64,
    /// Greedy-routing accuracy.
    pub accuracy_greedy: f64,
    /// Max-leaf accuracy.
    pub accuracy_max_leaf: f64,
    /// Share of images where greedy and soft routing agree.
    pub fidelity_greedy: f64,
    /// Share of images where max-leaf and soft routing agree.
    pub fidelity_max_leaf: f64,
    /// Mean number of decisions on the greedy path.
    pub mean_path_length: f64,
    /// Mean NLL loss of the soft output.
    pub loss: f64,
    /// Confusion matrix of soft routing: `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

impl EvalReport {
    /// Accuracy with `routing`.
    pub fn accuracy(&self, routing: Routing) -> f64 {
        match routing {
            Routing::Soft => self.accuracy_soft,
            Routing::Greedy => self.accuracy_greedy,
            Routing::MaxLeaf => self.accuracy_max_leaf,
        }
    }

    /// Share of images where `routing` agrees with soft routing (1 for soft itself).
    pub fn fidelity(&self, routing: Routing) -> f64 {
        match routing {
            Routing::Soft => 1.0,
            Routing::Greedy => self.fidelity_greedy,
            Routing::MaxLeaf => self.fidelity_max_leaf,
        }
    }
}

/// One line: accuracy per routing mode, greedy fidelity and mean path length, e.g.
/// `soft 92.50%  greedy 91.00%  max-leaf 90.75%  fidelity greedy 97.25%  mean path 4.12`.
impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for routing in [Routing::Soft, Routing::Greedy, Routing::MaxLeaf] {
            write!(
                f,
                "{} {:.2}%  ",
                routing.name(),
                100.0 * self.accuracy(routing)
            )?;
        }
        write!(
            f,
            "fidelity greedy {:.2}%  mean path {:.2}",
            100.0 * self.fidelity(Routing::Greedy),
            self.mean_path_length
        )
    }
}

/// Running sums for an [`EvalReport`].
#[derive(Debug, Clone, Default)]
pub struct EvalAccumulator {
    n: usize,
    soft: usize,
    greedy: usize,
    max_leaf: usize,
    fid_greedy: usize,
    fid_max_leaf: usize,
    path_len: usize,
    loss_sum: f64,
    confusion: Vec<Vec<u64>>,
}

impl EvalAccumulator {
    /// An empty accumulator for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            confusion: vec![vec![0; num_classes]; num_classes],
            ..Default::default()
        }
    }

    /// Adds a batch's decisions, labels and summed loss.
    pub fn add(&mut self, d: &Decisions, labels: &[u32], loss_sum: f64) {
        for (i, &y) in labels.iter().enumerate() {
            let y = y as usize;
            self.n += 1;
            self.soft += usize::from(d.soft[i] == y);
            self.greedy += usize::from(d.greedy[i] == y);
            self.max_leaf += usize::from(d.max_leaf[i] == y);
            self.fid_greedy += usize::from(d.greedy[i] == d.soft[i]);
            self.fid_max_leaf += usize::from(d.max_leaf[i] == d.soft[i]);
            self.path_len += d.greedy_path_len[i];
            if let Some(row) = self.confusion.get_mut(y) {
                if let Some(c) = row.get_mut(d.soft[i]) {
                    *c += 1;
                }
            }
        }
        self.loss_sum += loss_sum;
    }

    /// The report.
    pub fn finish(self) -> EvalReport {
        let n = self.n.max(1) as f64;
        EvalReport {
            num_images: self.n,
            accuracy_soft: self.soft as f64 / n,
            accuracy_greedy: self.greedy as f64 / n,
            accuracy_max_leaf: self.max_leaf as f64 / n,
            fidelity_greedy: self.fid_greedy as f64 / n,
            fidelity_max_leaf: self.fid_max_leaf as f64 / n,
            mean_path_length: self.path_len as f64 / n,
            loss: self.loss_sum / n,
            confusion: self.confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn modes_on_a_hand_built_output() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let topo = Topology::complete(2)?;
        // heap routing: root 0.6 (right), R 0.3 (left) -> leaf 2; max leaf by pi below.
        let routing = Tensor::new(&[[0.6f32, 0.9, 0.3]], &dev)?;
        let pi = crate::routing::leaf_path_probabilities(&routing, 2)?;
        // pi = [0.4*0.1, 0.4*0.9, 0.6*0.7, 0.6*0.3] = [.04, .36, .42, .18]
        let dists = Tensor::new(
            &[
                [1f32, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
                [0.0, 1.0, 0.0],
            ],
            &dev,
        )?;
        let probs = pi.matmul(&dists)?; // [.04, .54, .42] -> soft class 1
        let out = TreeOutput {
            probabilities: probs,
            leaf_path_probs: pi,
            routing,
            min_distances: Tensor::zeros((1, 3), candle_core::DType::F32, &dev)?,
        };
        let classes = leaf_top_classes(&dists)?;
        let d = decide(&topo, &out, &classes)?;
        assert_eq!(d.soft, vec![1]);
        assert_eq!(d.greedy_leaf, vec![2]);
        assert_eq!(d.greedy, vec![2]);
        assert_eq!(d.max_leaf, vec![2]);
        assert_eq!(d.greedy_path_len, vec![2]);
        let mut acc = EvalAccumulator::new(3);
        acc.add(&d, &[1], 0.5);
        let r = acc.finish();
        assert_eq!(r.accuracy_soft, 1.0);
        assert_eq!(r.fidelity_greedy, 0.0);
        assert_eq!(r.confusion[1][1], 1);
        assert_eq!(r.accuracy(Routing::MaxLeaf), 0.0);
        assert_eq!(r.fidelity(Routing::Soft), 1.0);
        assert_eq!(
            r.to_string(),
            "soft 100.00%  greedy 0.00%  max-leaf 0.00%  fidelity greedy 0.00%  mean path 2.00"
        );
        Ok(())
    }
}

//! The `ProtoTree` model: backbone → add-on → prototype distances → soft tree (spec §1).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use prototree_backbone::{build_backbone, Backbone};

use crate::config::ValidTreeConfig;
use crate::distance;
use crate::init::{self, ADD_ON_WEIGHT, BACKBONE_PREFIX, PROTOTYPES};
use crate::leaves::Leaves;
use crate::routing::{leaf_path_probabilities, RoutingMasks};
use crate::topology::Topology;
use crate::{Error, Result};

/// The latent patches of a batch after the add-on layer.
#[derive(Debug, Clone)]
pub struct Latent {
    /// `(b, h·w, d)` patches, row-major over the feature map.
    pub patches: Tensor,
    /// Feature-map height.
    pub height: usize,
    /// Feature-map width.
    pub width: usize,
}

/// Everything one soft forward pass computes.
#[derive(Debug, Clone)]
pub struct TreeOutput {
    /// Class distribution `ŷ = Σ_l π_l c_l`, `(b, k)`.
    pub probabilities: Tensor,
    /// Path probability `π_l` of every leaf (left to right) of the complete tree, `(b, L)`.
    pub leaf_path_probs: Tensor,
    /// Effective probability of routing right at every branch (heap order), `(b, P)`;
    /// equal to the similarity at decisions, 0 or 1 at pruned pass-throughs.
    pub routing: Tensor,
    /// Minimum distance of every prototype over the image's patches, `(b, P)`.
    pub min_distances: Tensor,
}

/// A neural prototype tree.
pub struct ProtoTree {
    config: ValidTreeConfig,
    topology: Topology,
    masks: RoutingMasks,
    varmap: VarMap,
    backbone: Box<dyn Backbone>,
    add_on: Var,
    prototypes: Var,
    leaves: Leaves,
    device: Device,
}

impl std::fmt::Debug for ProtoTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtoTree")
            .field("config", self.config.config())
            .field("num_decisions", &self.topology.num_decisions())
            .finish_non_exhaustive()
    }
}

fn var_of(varmap: &VarMap, name: &str) -> Result<Var> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Data("parameter map lock poisoned".into()))?;
    data.get(name)
        .cloned()
        .ok_or_else(|| Error::Data(format!("parameter `{name}` was not created")))
}

impl ProtoTree {
    /// A freshly initialised tree (complete topology, uniform leaves), parameters drawn
    /// deterministically from `seed`.
    pub fn new(config: &ValidTreeConfig, device: &Device, seed: u64) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let backbone = build_backbone(config.backbone(), vb.pp(BACKBONE_PREFIX))?;
        let c_in = backbone.out_channels();
        let (d, p) = (config.proto_dim(), config.num_prototypes());
        vb.get((d, c_in, 1, 1), ADD_ON_WEIGHT)?;
        vb.get((p, d, 1, 1), PROTOTYPES)?;
        init::initialize(&varmap, seed, device)?;
        let add_on = var_of(&varmap, ADD_ON_WEIGHT)?;
        let prototypes = var_of(&varmap, PROTOTYPES)?;
        let topology = Topology::complete(config.depth())?;
        let masks = RoutingMasks::new(&topology, device)?;
        let leaves = Leaves::zeros(config.num_leaves(), config.num_classes(), device)?;
        Ok(Self {
            config: config.clone(),
            topology,
            masks,
            varmap,
            backbone,
            add_on,
            prototypes,
            leaves,
            device: device.clone(),
        })
    }

    /// The checked configuration.
    pub fn config(&self) -> &ValidTreeConfig {
        &self.config
    }
    /// The (possibly pruned) tree shape.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    /// Replaces the tree shape (used by pruning); the depth must not change.
    pub fn set_topology(&mut self, topology: Topology) -> Result<()> {
        if topology.depth() != self.config.depth() {
            return Err(Error::ShapeMismatch {
                tensor: "topology".into(),
                expected: vec![self.config.depth()],
                got: vec![topology.depth()],
            });
        }
        self.masks = RoutingMasks::new(&topology, &self.device)?;
        self.topology = topology;
        Ok(())
    }
    /// All trainable and buffer tensors, by state_dict name (backbone under `_net.`).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }
    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes()
    }
    /// Prototype vectors `(P, d)`.
    pub fn prototypes(&self) -> Result<Tensor> {
        let (p, d) = (self.config.num_prototypes(), self.config.proto_dim());
        Ok(self.prototypes.as_tensor().reshape((p, d))?)
    }
    /// Replaces the prototype vectors (projection). `values`: `(P, d)`.
    pub fn set_prototypes(&mut self, values: &Tensor) -> Result<()> {
        let (p, d) = (self.config.num_prototypes(), self.config.proto_dim());
        if values.dims() != [p, d] {
            return Err(Error::ShapeMismatch {
                tensor: PROTOTYPES.into(),
                expected: vec![p, d],
                got: values.dims().to_vec(),
            });
        }
        // A copy: `values` may share the variable's storage (e.g. the tensor of
        // `prototypes()` when nothing was changed), which `Var::set` refuses.
        self.prototypes
            .set(&values.reshape((p, d, 1, 1))?.copy()?)?;
        Ok(())
    }
    /// The leaves.
    pub fn leaves(&self) -> &Leaves {
        &self.leaves
    }
    /// Mutable leaves (derivative-free update).
    pub fn leaves_mut(&mut self) -> &mut Leaves {
        &mut self.leaves
    }
    /// Replaces the leaves; their shape must be `(num_leaves, num_classes)`.
    pub fn set_leaves(&mut self, leaves: Leaves) -> Result<()> {
        let want = [self.config.num_leaves(), self.config.num_classes()];
        if leaves.params().dims() != want {
            return Err(Error::ShapeMismatch {
                tensor: "leaves".into(),
                expected: want.to_vec(),
                got: leaves.params().dims().to_vec(),
            });
        }
        self.leaves = leaves;
        Ok(())
    }

    /// Backbone + add-on: latent patches `sigmoid(W · f)`.
    ///
    /// # Shapes
    /// - `images`: `(b, 3, h, w)` normalised → patches `(b, h'·w', d)`
    pub fn latent(&self, images: &Tensor, train: bool) -> Result<Latent> {
        self.latent_with(images, train, false)
    }

    /// [`ProtoTree::latent`], optionally cutting the gradient after the backbone (a frozen
    /// backbone then costs no backward pass; BatchNorm statistics still update in training).
    pub fn latent_with(
        &self,
        images: &Tensor,
        train: bool,
        detach_backbone: bool,
    ) -> Result<Latent> {
        let features = self.backbone.features(images, train)?;
        let features = if detach_backbone {
            features.detach()
        } else {
            features
        };
        let (b, c, h, w) = features.dims4()?;
        let d = self.config.proto_dim();
        let weight = self.add_on.as_tensor().reshape((d, c))?;
        let flat = features
            .permute((0, 2, 3, 1))?
            .reshape((b * h * w, c))?
            .matmul(&weight.t()?)?;
        let patches = candle_nn::ops::sigmoid(&flat)?.reshape((b, h * w, d))?;
        Ok(Latent {
            patches,
            height: h,
            width: w,
        })
    }

    /// The soft tree on latent patches.
    pub fn forward_latent(&self, latent: &Latent) -> Result<TreeOutput> {
        // The stored (P, d, 1, 1) parameter goes in as it is: no reshape in the graph.
        let min_distances = distance::min_distances(&latent.patches, self.prototypes.as_tensor())?;
        let similarities = distance::similarity(&min_distances)?;
        let routing = self.masks.apply(&similarities)?;
        let leaf_path_probs = leaf_path_probabilities(&routing, self.config.depth())?;
        let probabilities = self.leaves.mixture(&leaf_path_probs)?;
        Ok(TreeOutput {
            probabilities,
            leaf_path_probs,
            routing,
            min_distances,
        })
    }

    /// Soft forward pass (all paths), the training-time output.
    ///
    /// # Shapes
    /// - `images`: `(b, 3, h, w)` normalised; see [`TreeOutput`] for the outputs.
    pub fn forward(&self, images: &Tensor, train: bool) -> Result<TreeOutput> {
        let latent = self.latent(images, train)?;
        self.forward_latent(&latent)
    }

    /// Replaces all tensors (backbone, add-on, prototypes) by name, checking shapes.
    /// Names missing from `tensors` are listed in the error.
    pub fn load_tensors(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        source: &std::path::Path,
    ) -> Result<()> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::Data("parameter map lock poisoned".into()))?;
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, var) in data.iter() {
            match tensors.get(name) {
                None => missing.push(name.clone()),
                Some(t) if t.dims() != var.dims() => misshaped.push(format!(
                    "{name}: file {:?}, model {:?}",
                    t.dims(),
                    var.dims()
                )),
                Some(_) => {}
            }
        }
        if !missing.is_empty() || !misshaped.is_empty() {
            missing.sort();
            misshaped.sort();
            return Err(Error::BadModelFile {
                path: source.to_path_buf(),
                reason: format!(
                    "tensors do not fit the configuration; missing: [{}]; mis-shaped: [{}]",
                    missing.join(", "),
                    misshaped.join("; ")
                ),
            });
        }
        for (name, var) in data.iter() {
            if let Some(t) = tensors.get(name) {
                var.set(&t.to_dtype(var.dtype())?.to_device(&self.device)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TreeConfig;
    use prototree_backbone::BackboneKind;

    pub(crate) fn tiny_tree(depth: usize, classes: usize) -> ProtoTree {
        let cfg = TreeConfig {
            backbone: BackboneKind::SmallCnn,
            depth,
            proto_dim: 8,
            num_classes: classes,
        }
        .check()
        .unwrap();
        ProtoTree::new(&cfg, &Device::Cpu, 1).unwrap()
    }

    #[test]
    fn forward_shapes_and_probabilities_sum_to_one() -> anyhow::Result<()> {
        let tree = tiny_tree(3, 4);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu)?;
        let out = tree.forward(&x, false)?;
        assert_eq!(out.probabilities.dims(), &[2, 4]);
        assert_eq!(out.leaf_path_probs.dims(), &[2, 8]);
        assert_eq!(out.routing.dims(), &[2, 7]);
        for row in out.leaf_path_probs.sum(1)?.to_vec1::<f32>()? {
            assert!((row - 1.0).abs() < 1e-5);
        }
        for row in out.probabilities.sum(1)?.to_vec1::<f32>()? {
            assert!((row - 1.0).abs() < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn prototypes_can_be_set_to_their_own_values() -> anyhow::Result<()> {
        // Route repair sets the prototypes even when it changed none of them: the tensor
        // then shares the variable's storage (this crashed a 120-epoch run at epoch 40).
        let mut tree = tiny_tree(2, 3);
        let before = tree.prototypes()?.flatten_all()?.to_vec1::<f32>()?;
        let same = tree.prototypes()?;
        tree.set_prototypes(&same)?;
        assert_eq!(tree.prototypes()?.flatten_all()?.to_vec1::<f32>()?, before);
        let doubled = (tree.prototypes()? * 2.0)?;
        tree.set_prototypes(&doubled)?;
        let after = tree.prototypes()?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(after, before.iter().map(|v| v * 2.0).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn same_seed_same_parameters() -> anyhow::Result<()> {
        let a = tiny_tree(2, 3);
        let b = tiny_tree(2, 3);
        let pa = a.prototypes()?.flatten_all()?.to_vec1::<f32>()?;
        let pb = b.prototypes()?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(pa, pb);
        Ok(())
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<ProtoTree>();
    }
}

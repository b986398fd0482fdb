//! Parameter groups (spec §2.2): the backbone, the "block" (the add-on, and the backbone's
//! last block when the schedule says so: it then trains while the rest of the backbone is
//! frozen) and the prototypes.
//! Each group has its own optimiser and learning rate; leaves are outside every group
//! (updated derivative-free).

use std::ops::{Index, IndexMut};

use candle_core::Var;
use prototree_tree::init::{ADD_ON_WEIGHT, BACKBONE_PREFIX, PROTOTYPES};
use prototree_tree::ProtoTree;

use crate::{Error, Result};

/// A parameter group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    /// The backbone except its last block (learning rate `lr_net`, frozen first).
    Backbone,
    /// The add-on and the backbone's last block (learning rate `lr_block`).
    Block,
    /// The prototypes (learning rate `lr`).
    Prototypes,
}

impl ParamGroup {
    /// Every group, in optimiser (and file) order.
    pub const ALL: [ParamGroup; 3] = [Self::Backbone, Self::Block, Self::Prototypes];

    /// The group's name in checkpoints and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Backbone => "backbone",
            Self::Block => "block",
            Self::Prototypes => "prototypes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The group of a state-dict name; `None` for buffers (BatchNorm statistics) and
    /// for names outside every group (the leaves).
    pub fn of(name: &str, last_block: &[String]) -> Option<Self> {
        if name.ends_with("running_mean")
            || name.ends_with("running_var")
            || name.ends_with("num_batches_tracked")
        {
            return None;
        }
        if name == PROTOTYPES {
            return Some(Self::Prototypes);
        }
        if name.starts_with("_add_on.") || name == ADD_ON_WEIGHT {
            return Some(Self::Block);
        }
        let rest = name.strip_prefix(BACKBONE_PREFIX)?.strip_prefix('.')?;
        if last_block
            .iter()
            .any(|p| rest == p || rest.starts_with(&format!("{p}.")))
        {
            Some(Self::Block)
        } else {
            Some(Self::Backbone)
        }
    }
}

/// One value per [`ParamGroup`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupMap<T>([T; 3]);

impl<T> GroupMap<T> {
    /// A map with `f(group)` for every group.
    pub fn from_fn(mut f: impl FnMut(ParamGroup) -> T) -> Self {
        Self(ParamGroup::ALL.map(&mut f))
    }

    /// `(group, value)` pairs in [`ParamGroup::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamGroup, &T)> {
        ParamGroup::ALL.into_iter().zip(self.0.iter())
    }

    /// `(group, value)` pairs in [`ParamGroup::ALL`] order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamGroup, &mut T)> {
        ParamGroup::ALL.into_iter().zip(self.0.iter_mut())
    }

    /// A map of `f(group, value)`.
    pub fn map<U>(self, mut f: impl FnMut(ParamGroup, T) -> U) -> GroupMap<U> {
        let [backbone, block, prototypes] = self.0;
        GroupMap([
            f(ParamGroup::Backbone, backbone),
            f(ParamGroup::Block, block),
            f(ParamGroup::Prototypes, prototypes),
        ])
    }

    /// The values in [`ParamGroup::ALL`] order (the layout of files and
    /// [`prototree_tree::EpochStats::learning_rates`]).
    pub fn into_array(self) -> [T; 3] {
        self.0
    }

    /// A map from values in [`ParamGroup::ALL`] order.
    pub fn from_array(values: [T; 3]) -> Self {
        Self(values)
    }
}

impl<T> Index<ParamGroup> for GroupMap<T> {
    type Output = T;
    fn index(&self, g: ParamGroup) -> &T {
        &self.0[g.index()]
    }
}

impl<T> IndexMut<ParamGroup> for GroupMap<T> {
    fn index_mut(&mut self, g: ParamGroup) -> &mut T {
        &mut self.0[g.index()]
    }
}

/// The name prefixes (below the backbone's) of the parameters in the [`ParamGroup::Block`]
/// group with the add-on: the backbone's last block when `last_block_with_addon`, else
/// none (the whole backbone is [`ParamGroup::Backbone`]).
pub fn block_prefixes(model: &ProtoTree, last_block_with_addon: bool) -> Vec<String> {
    if last_block_with_addon {
        model.backbone().last_block_prefixes()
    } else {
        Vec::new()
    }
}

/// The trainable variables of `model` by group, each sorted by name; the backbone's last
/// block is with the add-on when `last_block_with_addon`.
pub fn partition(
    model: &ProtoTree,
    last_block_with_addon: bool,
) -> Result<GroupMap<Vec<(String, Var)>>> {
    let last_block = block_prefixes(model, last_block_with_addon);
    let mut groups: GroupMap<Vec<(String, Var)>> = GroupMap::default();
    let data = model
        .varmap()
        .data()
        .lock()
        .map_err(|_| prototree_tree::Error::Data("parameter map lock poisoned".into()))
        .map_err(Error::from)?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        if let (Some(g), Some(var)) = (ParamGroup::of(name, &last_block), data.get(name)) {
            groups[g].push((name.clone(), var.clone()));
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_groups() {
        let lb = vec!["layer4.2".to_string()];
        let of = |n| ParamGroup::of(n, &lb);
        assert_eq!(of("_net.conv1.weight"), Some(ParamGroup::Backbone));
        assert_eq!(of("_net.layer4.2.conv1.weight"), Some(ParamGroup::Block));
        assert_eq!(
            of("_net.layer4.20.conv1.weight"),
            Some(ParamGroup::Backbone)
        );
        assert_eq!(of("_net.bn1.running_mean"), None);
        assert_eq!(of(ADD_ON_WEIGHT), Some(ParamGroup::Block));
        assert_eq!(of(PROTOTYPES), Some(ParamGroup::Prototypes));
    }

    #[test]
    fn the_last_block_joins_the_add_on_only_when_asked() -> anyhow::Result<()> {
        let cfg = prototree_tree::TreeConfig {
            backbone: prototree_backbone::BackboneKind::Resnet18,
            depth: 1,
            proto_dim: 4,
            num_classes: 2,
        }
        .check()?;
        let model = ProtoTree::new(&cfg, &candle_core::Device::Cpu, 0)?;
        assert!(block_prefixes(&model, false).is_empty());
        assert_eq!(
            block_prefixes(&model, true),
            model.backbone().last_block_prefixes()
        );
        let is_last = |n: &String| n.starts_with("_net.layer4.");
        let with = partition(&model, true)?;
        assert!(with[ParamGroup::Block].iter().any(|(n, _)| is_last(n)));
        let without = partition(&model, false)?;
        assert!(!without[ParamGroup::Block].iter().any(|(n, _)| is_last(n)));
        assert!(without[ParamGroup::Backbone]
            .iter()
            .any(|(n, _)| is_last(n)));
        let count =
            |m: &GroupMap<Vec<(String, Var)>>| m.iter().map(|(_, v)| v.len()).sum::<usize>();
        assert_eq!(count(&with), count(&without));
        Ok(())
    }

    #[test]
    fn group_map_is_indexed_by_group() {
        let mut m = GroupMap::from_fn(|g| g.name().len());
        assert_eq!(m[ParamGroup::Block], 5);
        m[ParamGroup::Prototypes] = 1;
        assert_eq!(m.clone().into_array(), [8, 5, 1]);
        let names: Vec<_> = m.iter().map(|(g, _)| g.name()).collect();
        assert_eq!(names, ["backbone", "block", "prototypes"]);
        assert_eq!(m.map(|_, v| v * 2).into_array(), [16, 10, 2]);
    }
}

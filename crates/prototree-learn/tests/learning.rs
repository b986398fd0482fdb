//! A tiny tree learns a planted-pattern task: the class is the colour of a small square at a
//! random position on a noisy background, so the prototypes have to find the square.

mod common;

use candle_core::Device;
use common::{Squares, CLASSES};
use prototree_backbone::BackboneKind;
use prototree_learn::Learner;
use prototree_tree::{evaluate, ProtoTree, TrainConfig, TreeConfig};

#[test]
fn tiny_tree_beats_chance_by_a_wide_margin() -> anyhow::Result<()> {
    let cfg = TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth: 3,
        proto_dim: 16,
        num_classes: CLASSES,
    }
    .check()?;
    let model = ProtoTree::new(&cfg, &Device::Cpu, 5)?;
    let tc = TrainConfig {
        epochs: 8,
        batch_size: 16,
        lr: 5e-3,
        lr_block: 5e-3,
        lr_net: 5e-3,
        freeze_epochs: 0,
        seed: 5,
        ..TrainConfig::default()
    };
    let mut learner = Learner::builder(model, &tc).build()?;
    let mut train = Squares::new(96, 1, 16);
    let mut test = Squares::new(48, 2, 16);
    let history = learner.fit(&mut train, None, &mut ())?;
    let model = learner.into_model();
    assert_eq!(history.len(), 8);
    assert!(history[7].train_loss < history[0].train_loss);
    let report = evaluate(&model, &mut test, &mut ())?;
    assert!(
        report.accuracy_soft >= 0.8,
        "soft accuracy {} (chance is 0.33)",
        report.accuracy_soft
    );
    // Leaves learnt class evidence: not uniform any more.
    let dists = model
        .leaves()
        .distributions()?
        .max(1)?
        .max(0)?
        .to_scalar::<f32>()?;
    assert!(dists > 0.5);
    Ok(())
}

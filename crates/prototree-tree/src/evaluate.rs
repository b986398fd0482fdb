//! Evaluation of a tree over a batch source: soft, greedy and max-leaf accuracy,
//! fidelity and loss.

use candle_core::DType;

use crate::batch::BatchSource;
use crate::inference::{decide, leaf_top_classes, EvalAccumulator, EvalReport};
use crate::loss::nll_per_image;
use crate::model::ProtoTree;
use crate::observer::{Event, Observer};
use crate::{Error, Result};

/// Evaluates soft, greedy and max-leaf routing, fidelity and loss over `source`,
/// reporting [`Event::EvaluationStarted`] and one [`Event::EvaluationBatch`] per batch.
pub fn evaluate(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    observer: &mut dyn Observer,
) -> Result<EvalReport> {
    let k = model.num_classes();
    let leaf_classes = leaf_top_classes(&model.leaves().distributions()?)?;
    let mut acc = EvalAccumulator::new(k);
    observer.on_event(&Event::EvaluationStarted {
        num_batches: source.num_batches(),
    });
    for batch in source.batches(0) {
        let batch = batch?;
        let labels = batch.labels.to_dtype(DType::U32)?;
        let label_values = labels.to_vec1::<u32>()?;
        if let Some(bad) = label_values.iter().find(|y| **y as usize >= k) {
            return Err(Error::LabelOutOfRange {
                label: *bad,
                num_classes: k,
            });
        }
        let out = model.forward(&batch.images, false)?;
        let loss_sum = nll_per_image(&out.probabilities, &labels)?
            .sum_all()?
            .to_scalar::<f32>()?;
        let decisions = decide(model.topology(), &out, &leaf_classes)?;
        acc.add(&decisions, &label_values, f64::from(loss_sum));
        observer.on_event(&Event::EvaluationBatch);
    }
    Ok(acc.finish())
}

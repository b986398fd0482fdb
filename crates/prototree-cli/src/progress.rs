//! Draws pipeline and training progress with indicatif.

use indicatif::{ProgressBar, ProgressStyle};
use prototree::prelude::{Event, Observer, Stage};
use prototree::tree::{BatchStats, EpochStats};

/// Progress bars on stderr; epoch summaries as log lines.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    loss_ema: Option<f32>,
}

impl CliProgress {
    /// Bars unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: None,
            quiet,
            loss_ema: None,
        }
    }

    fn start(&mut self, total: usize, label: String) {
        self.finish();
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template(
            "{spinner:.green} {msg:<28} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label);
        self.bar = Some(bar);
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints a line above the bars.
    pub fn line(&self, text: &str) {
        match &self.bar {
            // A hidden bar (stderr not a terminal) would swallow the line.
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }
}

impl CliProgress {
    fn epoch_started(&mut self, epoch: usize, num_epochs: usize, num_batches: usize) {
        self.start(num_batches, format!("epoch {epoch}/{num_epochs}"));
    }

    fn batch_finished(&mut self, stats: &BatchStats) {
        let ema = match self.loss_ema {
            Some(e) => 0.9 * e + 0.1 * stats.loss,
            None => stats.loss,
        };
        self.loss_ema = Some(ema);
        if let Some(bar) = &self.bar {
            bar.set_message(format!("epoch {} loss {:.3}", stats.epoch, ema));
            bar.inc(1);
        }
    }

    fn evaluation_started(&mut self, num_batches: usize) {
        self.start(num_batches, "evaluating".into());
    }

    fn evaluation_batch(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn epoch_finished(&mut self, s: &EpochStats) {
        self.finish();
        let eval = s
            .eval
            .as_ref()
            .map(|e| {
                format!(
                    " test acc {:.3} (greedy {:.3})",
                    e.accuracy_soft, e.accuracy_greedy
                )
            })
            .unwrap_or_default();
        let frozen = if s.backbone_frozen {
            " [backbone frozen]"
        } else {
            ""
        };
        // The leaf-sharing signature: classes without a leaf of their own, or routed to
        // other classes' leaves, stall a run.
        let sharing = s
            .leaf_sharing
            .as_ref()
            .map(|l| {
                format!(
                    " | leafless classes {} misrouted {} shared leaves {} routing H {:.2}",
                    l.classes_without_leaf.len(),
                    l.misrouted_classes.len(),
                    l.shared_leaves,
                    l.routing_entropy.unwrap_or(f64::NAN)
                )
            })
            .unwrap_or_default();
        let reseeds = if s.leaf_reseeds.is_empty() {
            String::new()
        } else {
            format!(" re-seeded leaves {}", s.leaf_reseeds.len())
        };
        if !self.quiet {
            eprintln!(
                "epoch {:>3}: loss {:.4} train acc {:.3}{eval} lr {:.1e} ({:.1}s){frozen}{sharing}{reseeds}",
                s.epoch, s.train_loss, s.train_accuracy, s.learning_rates[2], s.seconds
            );
        }
    }

    fn stage_started(&mut self, stage: Stage, total: usize) {
        if stage == Stage::Train {
            if !self.quiet {
                eprintln!("training for {total} epochs");
            }
            return;
        }
        self.start(total, stage.label().to_string());
    }

    fn stage_progress(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn stage_finished(&mut self, stage: Stage) {
        if stage != Stage::Train {
            self.finish();
        }
    }

    fn message(&self, text: &str) {
        if !self.quiet {
            self.line(text);
        }
    }
}

impl Observer for CliProgress {
    fn on_event(&mut self, event: &Event<'_>) {
        match *event {
            Event::EpochStarted {
                epoch,
                num_epochs,
                num_batches,
            } => self.epoch_started(epoch, num_epochs, num_batches),
            Event::BatchFinished(stats) => self.batch_finished(stats),
            Event::EvaluationStarted { num_batches } => self.evaluation_started(num_batches),
            Event::EvaluationBatch => self.evaluation_batch(),
            Event::EpochFinished(stats) => self.epoch_finished(stats),
            Event::StageStarted { stage, total } => self.stage_started(stage, total),
            Event::StageProgress { done } => self.stage_progress(done),
            Event::StageFinished(stage) => self.stage_finished(stage),
            Event::Message(text) => self.message(text),
        }
    }
}

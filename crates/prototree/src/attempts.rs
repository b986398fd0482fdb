//! Best of several attempts: a run with [`RunConfig::attempts`] > 1 holds a validation
//! split out of the training images ([`crate::train::carve_validation`]), trains each
//! attempt (seeds `seed`, `seed + 1`, …) on the rest in `RUN/attempts/K/` (a normal run
//! directory each), measures it on the validation split, and keeps the most accurate
//! attempt as the run's model, evaluated once on the test split. The test split never
//! chooses. With [`RunConfig::stop_at_validation`] it stops at the first attempt that
//! reaches that accuracy, with [`RunConfig::min_attempt_gain`] at the first attempt that
//! improves on the ones before it by less than that ([`AttemptsLog::stop_reason`]). The
//! scratch recipe trains this way by default ([`crate::recipe::Recipe::Scratch`]).
//! `RUN/attempts.json` records every finished attempt and the choice; an interrupted run
//! resumes where it stopped (finished attempts are kept, the attempt in progress continues
//! from its last checkpoint).

use std::path::{Path, PathBuf};

use candle_core::Device;
use prototree_data::Loader;
use prototree_learn::{
    checkpoint_exists, last_checkpoint_dir, load_checkpoint, read_warmup_log, Interrupter, RunDir,
    RunMode, METRICS_FILE, WARMUP_FILE,
};
use prototree_tree::io::write_atomic;
use prototree_tree::{ModelMeta, Observer};
use serde::{Deserialize, Serialize};

use crate::run_config::{RunConfig, RUN_CONFIG_FILE};
use crate::train::{finish_run, fit_run, load_data, record_skipped, Fitted, TrainOutcome};
use crate::{Error, Result};

/// Directory of the attempts inside a run directory.
pub const ATTEMPTS_DIR: &str = "attempts";

/// The record of a run's attempts, in its run directory.
pub const ATTEMPTS_FILE: &str = "attempts.json";

/// The largest `attempts.json` read back (a run of [`crate::run_config::MAX_ATTEMPTS`]
/// attempts writes a few kilobytes).
const MAX_ATTEMPTS_FILE_BYTES: u64 = 1 << 20;

/// The run directory of attempt `k` (0-based) of the run in `run`.
pub fn attempt_dir(run: &Path, k: usize) -> PathBuf {
    run.join(ATTEMPTS_DIR).join(k.to_string())
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Its index (0-based; its directory is `attempts/INDEX`).
    pub attempt: usize,
    /// Its seed.
    pub seed: u64,
    /// Soft accuracy on the validation split.
    pub validation_accuracy: f64,
    /// Training accuracy of its last epoch.
    pub final_train_accuracy: f64,
    /// Seconds it trained.
    pub train_seconds: f64,
}

/// `attempts.json`: the finished attempts and the one kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttemptsLog {
    /// Images in the validation split.
    pub validation_images: usize,
    /// The finished attempts, in the order they finished.
    pub attempts: Vec<AttemptRecord>,
    /// The attempt kept as the run's model, once chosen.
    pub chosen: Option<usize>,
}

impl AttemptsLog {
    /// Reads `RUN/attempts.json`; `None` when there is none.
    pub fn read(run: &Path) -> Result<Option<Self>> {
        let path = run.join(ATTEMPTS_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = prototree_limits::read::read_bounded_text(&path, MAX_ATTEMPTS_FILE_BYTES)
            .map_err(|e| match e {
                prototree_limits::Error::Io { path, source } => Error::Io { path, source },
                prototree_limits::Error::Limit(l) => Error::Invalid(l.to_string()),
            })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    fn write(&self, run: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Invalid(format!("{ATTEMPTS_FILE}: {e}")))?;
        write_atomic(&run.join(ATTEMPTS_FILE), text.as_bytes())?;
        Ok(())
    }

    /// The most accurate attempt on the validation split (the earliest of equals).
    pub fn best(&self) -> Option<&AttemptRecord> {
        self.attempts.iter().fold(None, |best, a| match best {
            Some(b) if b.validation_accuracy >= a.validation_accuracy => Some(b),
            _ => Some(a),
        })
    }

    fn finished(&self, k: usize) -> bool {
        self.attempts.iter().any(|a| a.attempt == k)
    }

    /// Why no further attempt is needed, if none is: the best attempt reached
    /// `stop_at` on the validation split, or the last attempt raised the best of those
    /// before it by less than `min_gain` (a new seed no longer helps; the data limits the
    /// accuracy). `None`: train the next attempt.
    pub fn stop_reason(&self, stop_at: Option<f64>, min_gain: Option<f64>) -> Option<String> {
        let best = self.best()?;
        if let Some(bar) = stop_at.filter(|bar| best.validation_accuracy >= *bar) {
            return Some(format!(
                "attempt {} reached {:.1}% on validation (the bar: {:.1}%)",
                best.attempt + 1,
                100.0 * best.validation_accuracy,
                100.0 * bar
            ));
        }
        let (last, earlier) = self.attempts.split_last()?;
        let before = earlier
            .iter()
            .map(|a| a.validation_accuracy)
            .reduce(f64::max)?;
        // How much the last attempt raised the best: a lower score raises it by 0.
        let gain = (last.validation_accuracy - before).max(0.0);
        match min_gain {
            Some(g) if gain < g => Some(format!(
                "attempt {} scored {:.1}% on validation, less than {:.1} points above the best before it ({:.1}%): the data, not the seed, limit the accuracy",
                last.attempt + 1,
                100.0 * last.validation_accuracy,
                100.0 * g,
                100.0 * before
            )),
            _ => None,
        }
    }
}

/// Whether `run` holds a run with attempts that can be resumed: an `attempts.json` or an
/// attempt with a checkpoint.
pub fn holds_attempts(run: &Path) -> bool {
    run.join(ATTEMPTS_FILE).is_file()
        || std::fs::read_dir(run.join(ATTEMPTS_DIR)).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| checkpoint_exists(&last_checkpoint_dir(&e.path())))
        })
}

/// Gets `out` ready for a run of `mode`, with attempts or without, before
/// [`RunDir::open`] (which refuses or clears a single run's checkpoints): a new run is
/// refused where a run with attempts is, as that keeps no checkpoint at the top level for
/// `RunDir` to see; a replacing run removes the old run's `attempts/` and
/// `attempts.json` (the report would show them as its own).
pub(crate) fn prepare_run_dir(out: &Path, mode: RunMode) -> Result<()> {
    match mode {
        RunMode::New if holds_attempts(out) => {
            Err(prototree_learn::Error::RunExists(out.to_path_buf()).into())
        }
        RunMode::Overwrite => {
            let dir = out.join(ATTEMPTS_DIR);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
            let file = out.join(ATTEMPTS_FILE);
            if file.exists() {
                std::fs::remove_file(&file).map_err(|source| Error::Io { path: file, source })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Opens `out` for a run with attempts as `mode` says: a new run is refused where one
/// exists, a replaced run loses its attempts, a resumed one needs some.
fn open_attempts_run(out: &Path, mode: RunMode) -> Result<()> {
    prepare_run_dir(out, mode)?;
    if mode == RunMode::Resume && !holds_attempts(out) {
        return Err(prototree_learn::Error::NoCheckpoint {
            run: out.to_path_buf(),
            checkpoint: last_checkpoint_dir(&attempt_dir(out, 0)),
        }
        .into());
    }
    // The top level holds no checkpoint of its own; this creates it, refuses a new run
    // where a single run's checkpoint is and, when replacing, clears that checkpoint.
    RunDir::open(
        out,
        if mode == RunMode::Resume {
            RunMode::Overwrite
        } else {
            mode
        },
    )?;
    Ok(())
}

/// Copies `name` from the attempt's directory to the run's, when it exists.
fn copy_up(attempt: &Path, out: &Path, name: &str) -> Result<()> {
    let from = attempt.join(name);
    if !from.is_file() {
        return Ok(());
    }
    let bytes = std::fs::read(&from).map_err(|source| Error::Io { path: from, source })?;
    write_atomic(&out.join(name), &bytes)?;
    Ok(())
}

/// What every attempt of one run shares.
struct Attempt<'a> {
    cfg: &'a RunConfig,
    out: &'a Path,
    meta: &'a ModelMeta,
    train: &'a Loader,
    validation: &'a Loader,
    device: &'a Device,
    interrupter: &'a Interrupter,
}

impl Attempt<'_> {
    /// Trains (or resumes) attempt `k` in its directory, saves its model there and
    /// measures it on the validation split.
    fn train(&self, k: usize, obs: &mut dyn Observer) -> Result<AttemptRecord> {
        let seed = self.cfg.schedule.seed.wrapping_add(k as u64);
        let mut attempt_cfg = self.cfg.clone();
        attempt_cfg.attempts = 1;
        attempt_cfg.schedule.seed = seed;
        let dir = attempt_dir(self.out, k);
        let resumed = checkpoint_exists(&last_checkpoint_dir(&dir));
        obs.message(&format!(
            "attempt {} of {} (seed {seed}){}, {} validation images held out",
            k + 1,
            self.cfg.attempts,
            if resumed { ", resumed" } else { "" },
            self.validation.len()
        ));
        // An attempt without a checkpoint (stopped in its warm-up) starts again.
        let mode = if resumed {
            RunMode::Resume
        } else {
            RunMode::Overwrite
        };
        let fitted = fit_run(
            &attempt_cfg,
            RunDir::open(&dir, mode)?,
            self.meta,
            self.train,
            self.validation,
            self.device,
            self.interrupter,
            obs,
        )?;
        // Evaluated on the validation split and saved in the attempt's directory, as a
        // run is on its test split.
        let done = finish_run(
            &dir,
            fitted,
            self.meta.clone(),
            self.validation,
            seed,
            self.device,
            obs,
        )?;
        let record = AttemptRecord {
            attempt: k,
            seed,
            validation_accuracy: done.test.accuracy_soft,
            final_train_accuracy: done.history.last().map_or(0.0, |e| e.train_accuracy),
            train_seconds: done.train_seconds,
        };
        obs.message(&format!(
            "attempt {}: validation accuracy {:.1}% (training {:.1}%)",
            k + 1,
            100.0 * record.validation_accuracy,
            100.0 * record.final_train_accuracy
        ));
        Ok(record)
    }
}

/// Trains the attempts of `cfg` (settled and checked by [`crate::train::train`]) in `out`
/// and keeps the best; see the module documentation.
pub(crate) fn train_attempts(
    cfg: &RunConfig,
    out: &Path,
    mode: RunMode,
    device: &Device,
    interrupter: &Interrupter,
    obs: &mut dyn Observer,
) -> Result<TrainOutcome> {
    open_attempts_run(out, mode)?;
    let data = load_data(cfg, obs)?;
    let Some(validation) = data.validation.as_ref() else {
        return Err(Error::Invalid(format!(
            "{}: no validation images for attempts (a class needs at least two training images)",
            cfg.data.display()
        )));
    };
    let meta = cfg.model_meta(data.dataset.class_names().to_vec());
    record_skipped(out, &data.skipped, obs)?;
    write_atomic(&out.join(RUN_CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
    let mut log = match mode {
        RunMode::Resume => AttemptsLog::read(out)?.unwrap_or_default(),
        _ => AttemptsLog::default(),
    };
    log.validation_images = validation.len();
    let attempt = Attempt {
        cfg,
        out,
        meta: &meta,
        train: &data.train,
        validation,
        device,
        interrupter,
    };
    for k in 0..cfg.attempts {
        if let Some(reason) = log.stop_reason(cfg.stop_at_validation, cfg.min_attempt_gain) {
            obs.message(&format!("no further attempt: {reason}"));
            break;
        }
        if !log.finished(k) {
            log.attempts.push(attempt.train(k, obs)?);
            log.write(out)?;
        }
    }
    let Some(best) = log.best().cloned() else {
        return Err(Error::Invalid(format!(
            "{}: no finished attempt to keep",
            out.join(ATTEMPTS_FILE).display()
        )));
    };
    log.chosen = Some(best.attempt);
    log.write(out)?;
    obs.message(&format!(
        "keeping attempt {} (seed {}), the most accurate of the {} trained: validation accuracy {:.1}%",
        best.attempt + 1,
        best.seed,
        log.attempts.len(),
        100.0 * best.validation_accuracy
    ));
    let dir = attempt_dir(out, best.attempt);
    let checkpoint = load_checkpoint(&last_checkpoint_dir(&dir), device)?;
    let (model, state) = (checkpoint.saved.model, checkpoint.state);
    let warmup = read_warmup_log(&dir.join(WARMUP_FILE))?;
    for name in [METRICS_FILE, WARMUP_FILE] {
        copy_up(&dir, out, name)?;
    }
    finish_run(
        out,
        Fitted {
            model,
            state,
            warmup,
        },
        meta,
        &data.test,
        cfg.schedule.seed,
        device,
        obs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(accuracies: &[f64]) -> AttemptsLog {
        AttemptsLog {
            validation_images: 100,
            attempts: accuracies
                .iter()
                .enumerate()
                .map(|(k, &a)| AttemptRecord {
                    attempt: k,
                    seed: k as u64,
                    validation_accuracy: a,
                    final_train_accuracy: 1.0,
                    train_seconds: 1.0,
                })
                .collect(),
            chosen: None,
        }
    }

    #[test]
    fn attempts_stop_at_the_bar_or_without_gain() {
        let (bar, gain) = (Some(0.97), Some(0.02));
        // Nothing trained yet, or one attempt below the bar: train the next.
        assert_eq!(log(&[]).stop_reason(bar, gain), None);
        assert_eq!(log(&[0.93]).stop_reason(bar, gain), None);
        // The bar reached, by the latest or an earlier attempt.
        let reached = log(&[0.95, 0.98]).stop_reason(bar, gain);
        assert!(reached.is_some_and(|r| r.contains("attempt 2 reached 98.0%")));
        assert!(log(&[0.97]).stop_reason(bar, gain).is_some());
        // The stall sweep's retries gained 3 to 10 points: go on.
        assert_eq!(log(&[0.93, 0.96]).stop_reason(bar, gain), None);
        assert_eq!(log(&[0.87, 0.96]).stop_reason(bar, gain), None);
        // A second attempt no better (or worse) than the first: the data limit it.
        let flat = log(&[0.931, 0.94]).stop_reason(bar, gain);
        let expected = "attempt 2 scored 94.0% on validation, less than 2.0 points above the best before it (93.1%)";
        assert!(flat.is_some_and(|r| r.contains(expected)));
        assert!(log(&[0.93, 0.90]).stop_reason(bar, gain).is_some());
        // The gain counts against the best before the last, not the one just before it.
        assert!(log(&[0.93, 0.85, 0.94]).stop_reason(bar, gain).is_some());
        // Without the settings, only the number of attempts stops a run.
        assert_eq!(log(&[0.93, 0.90]).stop_reason(None, None), None);
        assert!(log(&[0.93, 0.99]).stop_reason(None, gain).is_none());
        // A gain of 0 stops nothing: an attempt that scores lower raises the best by 0,
        // not by a negative amount.
        assert_eq!(log(&[0.93, 0.90]).stop_reason(bar, Some(0.0)), None);
    }
}

//! A training run as a TOML file (`prototree train --config run.toml`); the effective
//! configuration of every run is saved as `run.toml` in its directory, so `--resume` and
//! readers of the run know exactly what was trained.
//!
//! ```toml
//! data = "/data/CUB_200_2011"
//! backbone = "resnet50"
//! depth = 9
//! proto_dim = 256
//! image_size = 224
//! augmentation = "reference"
//! crop_to_bbox = true
//! eval_every = 5
//!
//! [schedule]
//! epochs = 100
//! batch_size = 64
//! lr = 0.001
//! lr_block = 0.001
//! lr_net = 1e-5
//! freeze_epochs = 30
//! milestones = [60, 70, 80, 90, 100]
//! gamma = 0.5
//! seed = 1
//! ```

use std::path::{Path, PathBuf};

use prototree_backbone::BackboneKind;
use prototree_data::{Augmentation, LoaderConfig, Normalization, Protocol};
use prototree_tree::io::{Preprocessing, FORMAT_VERSION};
use prototree_tree::{ModelMeta, TrainConfig, TreeConfig};
use serde::{Deserialize, Serialize};

use crate::recipe::Recipe;
use crate::{Error, Result};

/// File name of the effective configuration in a run directory.
pub const RUN_CONFIG_FILE: &str = "run.toml";

/// The validation share of a run with several attempts, unless set.
pub const DEFAULT_VALIDATION_SHARE: f64 = 0.1;

/// The most attempts a run may ask for.
pub const MAX_ATTEMPTS: usize = 100;

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_default_validation_share(x: &f64) -> bool {
    *x == DEFAULT_VALIDATION_SHARE
}

/// Everything that defines a training run (the device and output directory aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Data set directory (CUB-200-2011 or ImageFolder layout).
    pub data: PathBuf,
    /// Backbone architecture.
    pub backbone: BackboneKind,
    /// Pretrained backbone weights (`.pth` or `.safetensors`), if any.
    pub weights: Option<PathBuf>,
    /// Tree depth.
    pub depth: usize,
    /// Prototype length (add-on channels).
    pub proto_dim: usize,
    /// Square input side in pixels.
    pub image_size: u32,
    /// Training-time augmentation.
    pub augmentation: Augmentation,
    /// Crop images to their bounding boxes (CUB).
    pub crop_to_bbox: bool,
    /// Evaluate on the test split every this many epochs (0: only at the end).
    pub eval_every: usize,
    /// Leave out unreadable images (listed in the run directory) instead of failing.
    pub skip_bad_images: bool,
    /// Split the CPU kernels' reductions independently of the thread count, so that the
    /// run gives the same model on any number of threads (see docs/training.md for the
    /// cost).
    pub deterministic: bool,
    /// Check the configuration end to end on about 1% of the data, one epoch per phase
    /// (frozen, then unfrozen), without evaluation during training.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quick: bool,
    /// Train up to this many attempts (seeds `seed`, `seed + 1`, …) on the training images
    /// less a validation split, and keep the attempt most accurate on that split (1: one
    /// run on all training images). See [`crate::attempts`].
    #[serde(skip_serializing_if = "is_one")]
    pub attempts: usize,
    /// With several attempts: the share of each class's training images held out to
    /// choose between them (at least one image per class).
    #[serde(skip_serializing_if = "is_default_validation_share")]
    pub validation_share: f64,
    /// With several attempts: stop once an attempt reaches this validation accuracy
    /// (a fraction; none: train every attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at_validation: Option<f64>,
    /// With several attempts: stop once an attempt raises the best validation accuracy
    /// of the attempts before it by less than this (a fraction): a new seed no longer
    /// helps, the data limits the accuracy (none: no such stop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_attempt_gain: Option<f64>,
    /// The schedule.
    pub schedule: TrainConfig,
    /// The recipe the run started from ([`Recipe::preset`]); informative, the values
    /// above are what counts. Absent in configurations written before recipes existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<Recipe>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            backbone: BackboneKind::SmallCnn,
            weights: None,
            depth: 9,
            proto_dim: 256,
            image_size: 224,
            augmentation: Augmentation::Reference,
            crop_to_bbox: false,
            eval_every: 0,
            skip_bad_images: false,
            deterministic: false,
            quick: false,
            attempts: 1,
            validation_share: DEFAULT_VALIDATION_SHARE,
            stop_at_validation: None,
            min_attempt_gain: None,
            schedule: TrainConfig::default(),
            recipe: None,
        }
    }
}

impl RunConfig {
    /// How the training images are batched: this run's batch size, image size, crop,
    /// augmentation and its backbone's normalisation, shuffled, the last batch kept.
    pub fn training_loader_config(&self) -> LoaderConfig {
        let (mean, std) = self.backbone.normalization();
        LoaderConfig {
            batch_size: self.schedule.batch_size,
            image_size: self.image_size,
            crop_to_bbox: self.crop_to_bbox,
            augmentation: self.augmentation,
            normalization: Normalization { mean, std },
            shuffle: true,
            drop_last: false,
        }
    }

    /// Parses TOML text; `source` names the file in errors.
    pub fn from_toml(text: &str, source: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::Invalid(format!(
                "{}: {}",
                source.display(),
                e.to_string().trim_end()
            ))
        })
    }

    /// Reads a TOML file; settings it leaves out take the defaults of [`RunConfig`]. A
    /// relative `data` or `weights` path is taken relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_over(path, &RunConfig::default())
    }

    /// Parses TOML text over `base`: the settings the text leaves out keep `base`'s
    /// values (a recipe's preset, say). `source` names the file in errors.
    pub fn from_toml_over(text: &str, source: &Path, base: &RunConfig) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Invalid(format!(
                "{}: {}",
                source.display(),
                e.to_string().trim_end()
            ))
        };
        let given: toml::Table = toml::from_str(text).map_err(|e| bad(&e))?;
        let mut merged = toml::Table::try_from(base).map_err(|e| bad(&e))?;
        merge_tables(&mut merged, given);
        Self::from_toml(&toml::to_string(&merged).map_err(|e| bad(&e))?, source)
    }

    /// [`RunConfig::from_file`] over `base` (see [`RunConfig::from_toml_over`]).
    pub fn from_file_over(path: &Path, base: &RunConfig) -> Result<Self> {
        let text = prototree_limits::read::read_bounded_text(
            path,
            prototree_limits::maxima::MAX_RUN_TOML_BYTES,
        )
        .map_err(|e| match e {
            prototree_limits::Error::Io { path, source } => Error::Io { path, source },
            prototree_limits::Error::Limit(l) => Error::Invalid(l.to_string()),
        })?;
        let mut cfg = Self::from_toml_over(&text, path, base)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.data.is_relative() && !cfg.data.as_os_str().is_empty() {
            cfg.data = base.join(&cfg.data);
        }
        if let Some(w) = cfg.weights.as_mut() {
            if w.is_relative() {
                *w = base.join(&*w);
            }
        }
        Ok(cfg)
    }

    /// One line naming the recipe and the schedule a run trains with, for the start of a
    /// run.
    pub fn recipe_summary(&self) -> String {
        let s = &self.schedule;
        let recipe = self.recipe.map(Recipe::name).unwrap_or("custom");
        let weights = match &self.weights {
            Some(w) => format!("pretrained weights {}", w.display()),
            None => "random initial weights".to_string(),
        };
        let protocol = s.protocol.map(Protocol::name).unwrap_or("unset");
        let reseed = match (s.reseed_leaves, s.repair_keeps_routes) {
            (true, true) => ", leaf re-seeding (repairs keep other classes' routes)",
            (true, false) => ", leaf re-seeding",
            (false, _) => "",
        };
        let mut warmup = match s.backbone_warmup_epochs {
            0 => String::new(),
            n => format!(", {n} backbone warm-up epochs first"),
        };
        if s.prototypes_from_patches {
            warmup.push_str(", prototypes from training patches");
        }
        if self.attempts > 1 {
            warmup.push_str(&format!(
                ", best of {} attempts on a {:.0}% validation split{}",
                self.attempts,
                100.0 * self.validation_share,
                {
                    let stops: Vec<String> = [
                        self.stop_at_validation
                            .map(|x| format!("at {:.1}%", 100.0 * x)),
                        self.min_attempt_gain.map(|g| {
                            format!("once an attempt gains less than {:.1} points", 100.0 * g)
                        }),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    if stops.is_empty() {
                        String::new()
                    } else {
                        format!(" (stopping {})", stops.join(", or "))
                    }
                }
            ));
        }
        let last_block = if s.last_block_with_addon_for(self.backbone) {
            "the add-on's"
        } else {
            "the backbone's"
        };
        format!(
            "recipe {recipe} ({} with {weights}): depth {}, prototypes of {}, {} px, {} epochs of {}, lr {:e} / add-on {:e} / backbone {:e} (last block at {last_block}), {} frozen epochs, milestones {:?} (×{}), augmentation {}, {protocol} data protocol{reseed}{warmup}",
            self.backbone, self.depth, self.proto_dim, self.image_size, s.epochs, s.batch_size,
            s.lr, s.lr_block, s.lr_net, s.freeze_epochs, s.milestones, s.gamma,
            match self.augmentation {
                Augmentation::None => "none",
                Augmentation::Flip => "flip",
                Augmentation::Shift => "shift",
                Augmentation::Reference => "reference",
            }
        )
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))
    }

    /// The parts of the configuration that must match for a checkpoint to resume this run:
    /// everything except the number of epochs, the evaluation interval and the data
    /// folder (a moved data set resumes; the checkpoint's classes are checked against the
    /// data's separately).
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.schedule.epochs = 0;
        c.eval_every = 0;
        c.data = PathBuf::new();
        serde_json::to_string(&c).unwrap_or_default()
    }

    /// What a checkpoint's stored fingerprint stands for in this build: read as a
    /// configuration (settings added since it was written take their defaults, which are
    /// what older builds did) and fingerprinted again. A fingerprint that does not read as
    /// a configuration is returned as it is, and so refused by the comparison.
    pub fn normalized_fingerprint(stored: &str) -> String {
        match serde_json::from_str::<RunConfig>(stored) {
            Ok(c) => c.settled(false).fingerprint(),
            Err(_) => stored.to_string(),
        }
    }

    /// The configuration with the settings a file may leave unset made explicit, so that
    /// `run.toml` and `config.json` record what the run does. For a new run (`new_run`)
    /// they are the reference's choices: its CUB protocol (the plain one when
    /// `crop_to_bbox` asks for the plain protocol's box crops), and the backbone's last
    /// block with the add-on only for the iNaturalist ResNet-50. For a run being resumed they are
    /// what the builds before those settings did: the plain protocol, and the last block
    /// with the add-on.
    pub fn settled(&self, new_run: bool) -> Self {
        let mut c = self.clone();
        let s = &mut c.schedule;
        if s.protocol.is_none() {
            s.protocol = Some(if new_run && !self.crop_to_bbox {
                Protocol::Reference
            } else {
                Protocol::Plain
            });
        }
        if s.last_block_with_addon.is_none() {
            s.last_block_with_addon = Some(!new_run || s.last_block_with_addon_for(self.backbone));
        }
        c
    }

    /// [`Self::settled`] for resuming the run in `run_dir`: the settings left unset take
    /// what the run recorded in its `run.toml` (or, where it recorded nothing, what builds
    /// before those settings did).
    pub fn settled_for_resume(&self, run_dir: &Path) -> Self {
        let recorded = RunConfig::from_file(&run_dir.join(RUN_CONFIG_FILE))
            .map(|c| c.settled(false).schedule)
            .unwrap_or_else(|_| self.settled(false).schedule);
        let mut c = self.clone();
        let s = &mut c.schedule;
        s.protocol = s.protocol.or(recorded.protocol);
        s.last_block_with_addon = s.last_block_with_addon.or(recorded.last_block_with_addon);
        c.settled(false)
    }

    /// The configuration a run trains with: for a `quick` run, one epoch per phase
    /// (backbone warm-up, frozen, then unfrozen), no milestones, no evaluation during
    /// training and one attempt.
    pub fn effective(&self) -> Self {
        let mut c = self.clone();
        if c.quick {
            c.attempts = 1;
            c.schedule.backbone_warmup_epochs = c.schedule.backbone_warmup_epochs.min(1);
            let frozen = c.schedule.freeze_epochs.min(1);
            c.schedule.epochs = frozen + 1;
            c.schedule.freeze_epochs = frozen;
            c.schedule.milestones.clear();
            c.eval_every = 0;
        }
        c
    }

    /// Checks every size and rate against its limit (see docs/limits.md): the
    /// architecture, the input side, the schedule, and the memory one training batch and
    /// the model need. `source` names the file (or the flags) in errors.
    pub fn check(&self, source: &Path) -> Result<()> {
        let file = source.display().to_string();
        let bad = |e: String| Error::Invalid(format!("{file}: {e}"));
        prototree_limits::check::in_range(
            "",
            "image_size",
            u64::from(self.image_size),
            prototree_limits::maxima::MIN_IMAGE_SIDE,
            prototree_limits::maxima::MAX_IMAGE_SIDE,
        )
        .map_err(|e| bad(e.to_string()))?;
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(bad(format!(
                "attempts must be between 1 and {MAX_ATTEMPTS}, got {}",
                self.attempts
            )));
        }
        if !(self.validation_share > 0.0 && self.validation_share < 1.0) {
            return Err(bad(format!(
                "validation_share must be a fraction strictly between 0 and 1, got {}",
                self.validation_share
            )));
        }
        for (name, value) in [
            ("stop_at_validation", self.stop_at_validation),
            ("min_attempt_gain", self.min_attempt_gain),
        ] {
            if let Some(x) = value {
                if !(0.0..=1.0).contains(&x) {
                    return Err(bad(format!(
                        "{name} must be a fraction between 0 and 1, got {x}"
                    )));
                }
            }
        }
        let tree = self.tree(2).check().map_err(|e| bad(e.to_string()))?;
        let schedule = self.schedule.check().map_err(|e| bad(e.to_string()))?;
        prototree_tree::memory::check_training(
            &tree,
            self.image_size,
            schedule.config().batch_size,
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(())
    }

    /// The architecture for `num_classes` classes.
    pub fn tree(&self, num_classes: usize) -> TreeConfig {
        TreeConfig {
            backbone: self.backbone,
            depth: self.depth,
            proto_dim: self.proto_dim,
            num_classes,
        }
    }

    /// The preprocessing a model trained with this configuration expects.
    pub fn preprocessing(&self) -> Preprocessing {
        let (mean, std) = self.backbone.normalization();
        Preprocessing {
            image_size: self.image_size,
            mean,
            std,
        }
    }

    /// The `config.json` of a model trained with this configuration on `class_names`.
    pub fn model_meta(&self, class_names: Vec<String>) -> ModelMeta {
        ModelMeta {
            format_version: FORMAT_VERSION,
            tree: self.tree(class_names.len()),
            class_names,
            preprocessing: self.preprocessing(),
            train: Some(self.schedule.clone()),
        }
    }
}

/// Copies every key of `given` into `base`, merging nested tables key by key.
fn merge_tables(base: &mut toml::Table, given: toml::Table) {
    for (key, value) in given {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(g)) => merge_tables(b, g),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_keys() {
        let mut cfg = RunConfig {
            data: "/d".into(),
            depth: 4,
            ..RunConfig::default()
        };
        cfg.schedule.milestones = vec![3, 5];
        let text = cfg.to_toml().unwrap();
        assert_eq!(
            RunConfig::from_toml(&text, Path::new("x.toml")).unwrap(),
            cfg
        );
        let partial =
            RunConfig::from_toml("depth = 3\n[schedule]\nepochs = 7\n", Path::new("p.toml"))
                .unwrap();
        assert_eq!(
            (
                partial.depth,
                partial.schedule.epochs,
                partial.schedule.lr_net
            ),
            (3, 7, 1e-5)
        );
        let err = RunConfig::from_toml("dept = 3\n", Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml") && err.contains("dept"), "{err}");
        let err = RunConfig::from_toml("depth = \"x\"\n", Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        let mut other = cfg.clone();
        other.schedule.lr = 0.5;
        other.schedule.epochs = 99;
        let d = prototree_learn::fingerprint_differences(&cfg.fingerprint(), &other.fingerprint());
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("schedule.lr:"));
    }

    #[test]
    fn fingerprints_ignore_the_data_folder_and_read_older_ones_with_defaults() -> anyhow::Result<()>
    {
        let cfg = RunConfig {
            data: "/data/a".into(),
            ..RunConfig::default()
        };
        let moved = RunConfig {
            data: "/elsewhere/a".into(),
            ..cfg.clone()
        };
        assert_eq!(cfg.fingerprint(), moved.fingerprint());
        // A fingerprint written before a setting existed (here: with the data folder and
        // without `skip_bad_images`) stands for the default of that setting …
        let mut old: serde_json::Value = serde_json::from_str(&cfg.fingerprint())?;
        old["data"] = "/data/a".into();
        old.as_object_mut()
            .map(|m| m.remove("skip_bad_images"))
            .ok_or_else(|| anyhow::anyhow!("not an object"))?;
        let old = old.to_string();
        assert_ne!(old, cfg.fingerprint());
        // … and settings older builds did not record stand for what they did.
        assert_eq!(
            RunConfig::normalized_fingerprint(&old),
            cfg.settled(false).fingerprint()
        );
        assert_eq!(RunConfig::normalized_fingerprint("garbage"), "garbage");
        Ok(())
    }
}

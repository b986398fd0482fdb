//! The hard maxima: each far above any real model, data set or checkpoint, low enough
//! that a value under it cannot make an allocation fail by itself. Sizes that multiply
//! (prototypes × length, batch × pixels) are checked again against the memory budget
//! ([`crate::memory`]). docs/limits.md lists each with its reason.

/// Largest square input side in pixels (the reference trains at 224; CUB images are
/// about 500 pixels across).
pub const MAX_IMAGE_SIDE: u64 = 4096;
/// Smallest input side the backbones accept (the loader's minimum).
pub const MIN_IMAGE_SIDE: u64 = 8;
/// Deepest tree: 2^16 − 1 prototypes and 2^16 leaves (the reference uses 9).
pub const MAX_DEPTH: u64 = 16;
/// Longest prototype (add-on channels; the reference uses 256).
pub const MAX_PROTO_DIM: u64 = 16_384;
/// Most classes (CUB has 200, ImageNet 1000, iNaturalist 10 000).
pub const MAX_CLASSES: u64 = 100_000;
/// Longest class name in bytes.
pub const MAX_CLASS_NAME_BYTES: u64 = 4096;
/// Largest batch.
pub const MAX_BATCH_SIZE: u64 = 4096;
/// Most epochs of a schedule (and largest milestone).
pub const MAX_EPOCHS: u64 = 100_000;
/// Largest learning rate, weight decay, Adam epsilon or learning-rate decay factor:
/// a step of 1000 × the gradient is garbage arithmetic, not training.
pub const MAX_RATE: f64 = 1000.0;
/// Largest absolute normalisation mean (pixels are scaled to [0, 1] first).
pub const MAX_NORM_MEAN: f64 = 1000.0;
/// Smallest normalisation standard deviation (dividing by less amplifies a grey level
/// past f32 precision).
pub const MIN_NORM_STD: f64 = 1e-6;
/// Largest normalisation standard deviation.
pub const MAX_NORM_STD: f64 = 1000.0;

/// Largest `config.json` of a model directory (100 000 class names fit many times).
pub const MAX_CONFIG_JSON_BYTES: u64 = 64 << 20;
/// Largest `tree.bin` (topology and projection records) and bincode's claim limit.
pub const MAX_TREE_BIN_BYTES: u64 = 64 << 20;
/// Largest `run.toml`.
pub const MAX_RUN_TOML_BYTES: u64 = 1 << 20;
/// Largest checkpoint state file (`train_state.bin`: optimiser moments are in
/// safetensors, this holds counters and small vectors).
pub const MAX_STATE_BIN_BYTES: u64 = 64 << 20;

/// Highest tensor rank (PyTorch's own maximum is 64).
pub const MAX_TENSOR_RANK: u64 = 64;
/// Largest single tensor in bytes (checked again against the memory budget).
pub const MAX_TENSOR_BYTES: u64 = 64 << 30;

/// Most memo entries of one pickle stream.
pub const MAX_PICKLE_MEMO: u64 = 1 << 22;
/// Most objects of one pickle stream.
pub const MAX_PICKLE_OBJECTS: u64 = 1 << 24;
/// Most items on the pickle stack, and in one container.
pub const MAX_PICKLE_CONTAINER: u64 = 1 << 24;
/// Deepest nesting of open `MARK`s (each is an unfinished tuple, list, dict or call;
/// Python's own recursion limit is 1000).
pub const MAX_PICKLE_NESTING: u64 = 1000;
/// Most bytes or items a pickle's data constructors (`bytearray`, `set`,
/// `_codecs.encode`) may copy, as a multiple of the stream's length: a constructor
/// applied again and again to one memoised value would otherwise copy it each time.
pub const PICKLE_COPY_FACTOR: u64 = 4;
/// Most entries of a zip archive (a state dict of 10 000 tensors has 10 000 entries).
pub const MAX_ZIP_ENTRIES: u64 = 1 << 20;
/// Deepest nesting of inline storages (`torch.storage._load_from_bytes` inside one).
pub const MAX_INLINE_STORAGE_NESTING: u64 = 2;

/// Largest CUB metadata file (`parts/part_locs.txt` of CUB-200-2011 is 6 MB).
pub const MAX_CUB_FILE_BYTES: u64 = 1 << 30;
/// Most lines of one CUB metadata file (CUB-200-2011 has 176 820 in `part_locs.txt`).
pub const MAX_CUB_LINES: u64 = 10_000_000;
/// Longest line of a CUB metadata file.
pub const MAX_CUB_LINE_BYTES: u64 = 64 << 10;

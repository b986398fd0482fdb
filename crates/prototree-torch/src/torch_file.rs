//! PyTorch files: `torch.save` archives (zip, PyTorch ≥ 1.6), the pre-1.6 `torch.save`
//! stream, and plain pickles (`pickle.dump` of a module, the reference's `tree.pkl`).
//!
//! All three are read into a [`Graph`] with [`crate::pickle`]; tensors are rebuilt from
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` records without
//! running any Python:
//! - zip archive: a storage is a persistent id `('storage', torch.FloatStorage, key, …)`
//!   whose bytes are the archive entry `<prefix>/data/<key>`;
//! - pre-1.6 stream: magic number, protocol, system info and the object pickle, then a
//!   pickle of the sorted storage keys, then each storage as an element count (`i64`) and
//!   its raw little-endian bytes;
//! - plain pickle: a storage is `torch.storage._load_from_bytes(b)`, where `b` is itself a
//!   pre-1.6 stream holding that one storage.
//!
//! Sizes are bounded before anything is allocated: the whole file must fit the memory
//! budget ([`prototree_limits::memory`]); a zip entry cannot claim more bytes than the
//! archive holds, nor an archive more than [`maxima::MAX_ZIP_ENTRIES`] entries; a tensor's
//! rank, element count and byte count are checked against its storage and
//! [`maxima`]; the tensors rebuilt from one file together must fit the memory budget
//! (storages shared by many tensors are not copied per tensor); inline storages nest at
//! most [`maxima::MAX_INLINE_STORAGE_NESTING`] deep and are parsed at most
//! [`maxima::PICKLE_COPY_FACTOR`] × the file's length in all.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use prototree_limits::{maxima, memory, LimitError};

use crate::pickle::{self, Graph, ObjId, Value};
use crate::{Error, Result};

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as `LONG1` bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Deepest module nesting followed when listing a module's tensors.
const MAX_MODULE_DEPTH: usize = 256;

/// How a PyTorch file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// `torch.save` zip archive (PyTorch ≥ 1.6).
    Zip,
    /// `torch.save` stream of PyTorch < 1.6 (or `_use_new_zipfile_serialization=False`).
    Legacy,
    /// A plain `pickle.dump` (the reference's `tree.pkl`).
    Pickle,
}

/// The element type of a storage, from its class name (`torch.FloatStorage`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageType {
    /// Class name, e.g. `FloatStorage`.
    pub name: String,
    /// Bytes per element.
    pub element_size: usize,
    /// The candle type, when candle has one.
    pub dtype: Option<DType>,
}

impl StorageType {
    fn from_name(name: &str) -> Option<Self> {
        let (element_size, dtype) = match name {
            "FloatStorage" => (4, Some(DType::F32)),
            "DoubleStorage" => (8, Some(DType::F64)),
            "HalfStorage" => (2, Some(DType::F16)),
            "BFloat16Storage" => (2, Some(DType::BF16)),
            "LongStorage" => (8, Some(DType::I64)),
            "IntStorage" => (4, Some(DType::I32)),
            "ShortStorage" => (2, Some(DType::I16)),
            "ByteStorage" => (1, Some(DType::U8)),
            "BoolStorage" => (1, Some(DType::U8)),
            "CharStorage" => (1, None),
            _ => return None,
        };
        Some(Self {
            name: name.to_string(),
            element_size,
            dtype,
        })
    }
}

/// A tensor storage: its type and raw bytes (borrowed from the file where it can be).
#[derive(Debug, Clone)]
struct Storage<'a> {
    kind: StorageType,
    bytes: Cow<'a, [u8]>,
}

/// What rebuilding the tensors of one file may still spend: bytes of tensors, bytes of
/// inline storages parsed.
struct Spend {
    tensor_bytes: Cell<u64>,
    inline_bytes: Cell<u64>,
}

/// One PyTorch file, parsed.
#[derive(Debug, Clone)]
pub struct TorchFile {
    path: PathBuf,
    format: FileFormat,
    graph: Graph,
    root: ObjId,
    /// Raw storage bytes by key (zip entries `data/<key>` or pre-1.6 storages).
    storages: HashMap<String, Vec<u8>>,
}

/// A [`LimitError`] about `path` as an [`Error::BadFile`].
pub(crate) fn limit(path: &Path, e: LimitError) -> Error {
    bad(path, e.to_string())
}

/// A [`Error::BadFile`] for `path`.
pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl TorchFile {
    /// Reads and parses `path` (any of the three [`FileFormat`]s).
    pub fn open(path: &Path) -> Result<Self> {
        let budget = memory::budget().map_err(|e| limit(path, e))?;
        let bytes = prototree_limits::read_bounded(path, budget.bytes).map_err(|e| match e {
            prototree_limits::Error::Io { path, source } => Error::Io { path, source },
            prototree_limits::Error::Limit(e) => {
                let e = LimitError {
                    file: String::new(),
                    ..e
                };
                bad(path, format!("{e} (the memory budget: {})", budget.source))
            }
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Parses the contents of a file; `path` is used in error messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Self::from_zip(path, bytes);
        }
        if bytes.first() != Some(&0x80) {
            return Err(bad(
                path,
                "neither a torch.save archive nor a pickle (wrong first bytes)",
            ));
        }
        let (graph, root, used) = parse_at(path, &bytes, 0)?;
        let is_legacy =
            matches!(graph.get(root), Some(Value::BigInt(b)) if b.as_slice() == LEGACY_MAGIC);
        if is_legacy {
            Self::from_legacy(path, &bytes, used)
        } else {
            Ok(Self {
                path: path.to_path_buf(),
                format: FileFormat::Pickle,
                graph,
                root,
                storages: HashMap::new(),
            })
        }
    }

    fn from_zip(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let zip_err = |e: zip::result::ZipError| bad(path, format!("zip archive: {e}"));
        let archive_len = bytes.len() as u64;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_err)?;
        prototree_limits::check::at_most(
            "",
            "zip entries",
            archive.len() as u64,
            maxima::MAX_ZIP_ENTRIES,
        )
        .map_err(|e| limit(path, e))?;
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(zip_err)?;
        let pkl = names
            .iter()
            .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
            .cloned()
            .ok_or_else(|| bad(path, "zip archive without a `data.pkl` entry"))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let read_entry = |archive: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
                          name: &str|
         -> Result<Vec<u8>> {
            let entry = archive.by_name(name).map_err(zip_err)?;
            // Entries are stored uncompressed (torch.save never compresses, and no
            // decompressor is built in): none can hold more than the archive.
            let claimed = entry.size();
            prototree_limits::check::at_most(
                "",
                &format!("size of zip entry `{name}`"),
                claimed,
                archive_len,
            )
            .map_err(|e| limit(path, e))?;
            let mut out = Vec::with_capacity(usize::try_from(claimed).unwrap_or(0));
            entry
                .take(archive_len)
                .read_to_end(&mut out)
                .map_err(|e| bad(path, format!("zip entry `{name}`: {e}")))?;
            Ok(out)
        };
        let data = read_entry(&mut archive, &pkl)?;
        let (graph, root, _) = parse_at(path, &data, 0)?;
        let data_prefix = format!("{prefix}data/");
        let mut storages = HashMap::new();
        for name in &names {
            if let Some(key) = name.strip_prefix(&data_prefix) {
                if !key.is_empty() && !key.contains('/') {
                    storages.insert(key.to_string(), read_entry(&mut archive, name)?);
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            format: FileFormat::Zip,
            graph,
            root,
            storages,
        })
    }

    fn from_legacy(path: &Path, bytes: &[u8], mut pos: usize) -> Result<Self> {
        // protocol version, then system info
        for what in ["protocol version", "system info"] {
            let (_, _, used) = parse_at(path, bytes, pos)
                .map_err(|e| bad(path, format!("pre-1.6 torch.save {what}: {e}")))?;
            pos += used;
        }
        let (graph, root, used) = parse_at(path, bytes, pos)?;
        pos += used;
        let (keys_graph, keys_root, used) = parse_at(path, bytes, pos)?;
        pos += used;
        let keys: Vec<String> = keys_graph
            .seq(keys_root)
            .ok_or_else(|| bad(path, "pre-1.6 torch.save: storage keys are not a list"))?
            .iter()
            .map(|k| keys_graph.str(*k).map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(path, "pre-1.6 torch.save: a storage key is not a string"))?;
        // Element sizes come from the persistent ids of the object pickle.
        let mut kinds: HashMap<String, StorageType> = HashMap::new();
        for id in 0..graph.len() {
            if let Some(Value::PersistentId(pid)) = graph.get(id) {
                if let Some((key, kind, _)) = storage_pid(&graph, *pid) {
                    kinds.insert(key, kind);
                }
            }
        }
        let mut storages = HashMap::new();
        for key in keys {
            let kind = kinds.get(&key).ok_or_else(|| {
                bad(
                    path,
                    format!("storage `{key}` has no type in the object pickle"),
                )
            })?;
            let count = bytes
                .get(pos..pos + 8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    u64::from_le_bytes(a)
                })
                .ok_or_else(|| bad(path, format!("storage `{key}` is truncated")))?;
            pos += 8;
            let len = usize::try_from(count)
                .ok()
                .and_then(|c| c.checked_mul(kind.element_size))
                .filter(|n| pos.checked_add(*n).is_some_and(|end| end <= bytes.len()))
                .ok_or_else(|| bad(path, format!("storage `{key}` is truncated")))?;
            storages.insert(key, bytes[pos..pos + len].to_vec());
            pos += len;
        }
        Ok(Self {
            path: path.to_path_buf(),
            format: FileFormat::Legacy,
            graph,
            root,
            storages,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout of the file.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The object graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The top-level object (a module, or a state dict).
    pub fn root(&self) -> ObjId {
        self.root
    }

    fn storage<'s>(&'s self, id: ObjId, spend: &Spend, nesting: u64) -> Result<Storage<'s>> {
        let g = &self.graph;
        match g.get(id) {
            Some(Value::PersistentId(pid)) => {
                let (key, kind, view) = storage_pid(g, *pid).ok_or_else(|| {
                    bad(&self.path, "a persistent id is not a tensor storage record")
                })?;
                let bytes = self.storages.get(&key).ok_or_else(|| {
                    bad(
                        &self.path,
                        format!("storage `{key}` is missing from the file"),
                    )
                })?;
                let bytes = match view {
                    None => Cow::Borrowed(bytes.as_slice()),
                    Some((offset, len)) => {
                        let range = offset
                            .checked_mul(kind.element_size)
                            .zip(len.checked_mul(kind.element_size))
                            .and_then(|(s, n)| Some(s..s.checked_add(n)?));
                        let view = range.and_then(|r| bytes.get(r)).ok_or_else(|| {
                            bad(&self.path, format!("storage view of `{key}` out of range"))
                        })?;
                        Cow::Borrowed(view)
                    }
                };
                Ok(Storage { kind, bytes })
            }
            Some(Value::Instance(inst)) => {
                let callee = g.global(inst.callable);
                if callee != Some(("torch.storage", "_load_from_bytes")) {
                    return Err(bad(
                        &self.path,
                        format!("unsupported tensor storage record {callee:?}"),
                    ));
                }
                let blob = g
                    .seq(inst.args)
                    .and_then(|a| a.first())
                    .and_then(|b| match g.get(*b) {
                        Some(Value::Bytes(b)) => Some(b),
                        _ => None,
                    })
                    .ok_or_else(|| bad(&self.path, "_load_from_bytes without bytes"))?;
                prototree_limits::check::at_most(
                    "",
                    "nesting of inline storages",
                    nesting + 1,
                    maxima::MAX_INLINE_STORAGE_NESTING,
                )
                .map_err(|e| limit(&self.path, e))?;
                let parsed = spend.inline_bytes.get() + blob.len() as u64;
                let budget = self
                    .graph_bytes()
                    .saturating_mul(maxima::PICKLE_COPY_FACTOR);
                if parsed > budget {
                    return Err(limit(
                        &self.path,
                        LimitError::new(
                            "",
                            "bytes of inline storages parsed",
                            parsed,
                            format!(
                                "over the limit of {budget} (a storage shared by many tensors?)"
                            ),
                        ),
                    ));
                }
                spend.inline_bytes.set(parsed);
                let inner = TorchFile::from_bytes(&self.path, blob.clone())?;
                if inner.format == FileFormat::Pickle {
                    return Err(bad(&self.path, "inline storage is not a torch.save stream"));
                }
                let s = inner.storage(inner.root, spend, nesting + 1)?;
                Ok(Storage {
                    kind: s.kind,
                    bytes: Cow::Owned(s.bytes.into_owned()),
                })
            }
            _ => Err(bad(
                &self.path,
                "a tensor's storage is neither a persistent id nor inline bytes",
            )),
        }
    }

    /// Rebuilds the tensor recorded at `id` (a `_rebuild_tensor_v2` / `_rebuild_parameter`
    /// call) on the CPU. `Ok(None)` when its element type has no candle equivalent.
    pub fn tensor(&self, id: ObjId) -> Result<Option<Tensor>> {
        self.tensor_at_depth(id, 0, &self.spend())
    }

    /// The spending allowance of one file: its tensors within the memory budget.
    fn spend(&self) -> Spend {
        Spend {
            tensor_bytes: Cell::new(0),
            inline_bytes: Cell::new(0),
        }
    }

    /// A size that bounds how much inline-storage parsing the file may ask for: the bytes
    /// the pickle holds (at least 1 MiB).
    fn graph_bytes(&self) -> u64 {
        let stored: usize = self.storages.values().map(Vec::len).sum();
        (self.graph.len() as u64)
            .saturating_mul(16)
            .saturating_add(stored as u64)
            .max(1 << 20)
    }

    fn tensor_at_depth(&self, id: ObjId, depth: usize, spend: &Spend) -> Result<Option<Tensor>> {
        let g = &self.graph;
        let not_tensor = || bad(&self.path, "an entry is not a tensor");
        if depth > 8 {
            return Err(not_tensor());
        }
        let inst = g.instance(id).ok_or_else(not_tensor)?;
        let args = g.seq(inst.args).ok_or_else(not_tensor)?;
        match g.global(inst.callable) {
            Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
                let data = *args.first().ok_or_else(not_tensor)?;
                self.tensor_at_depth(data, depth + 1, spend)
            }
            Some(("torch._utils", "_rebuild_from_type_v2")) => {
                // (func, type, args, state): the tensor is func(*args).
                let (func, fargs) = match args {
                    [f, _, a, ..] => (*f, *a),
                    _ => return Err(not_tensor()),
                };
                let (module, name) = g.global(func).ok_or_else(not_tensor)?;
                if module != "torch._utils" {
                    return Err(not_tensor());
                }
                let inner = g.seq(fargs).ok_or_else(not_tensor)?.to_vec();
                self.rebuild(name, &inner, spend)
            }
            Some(("torch._utils", name)) => self.rebuild(name, args, spend),
            _ => Err(not_tensor()),
        }
    }

    fn rebuild(&self, func: &str, args: &[ObjId], spend: &Spend) -> Result<Option<Tensor>> {
        let g = &self.graph;
        if func != "_rebuild_tensor_v2" && func != "_rebuild_tensor" {
            return Err(bad(
                &self.path,
                format!("unsupported tensor record `{func}`"),
            ));
        }
        let [storage, offset, size, stride, ..] = args else {
            return Err(bad(
                &self.path,
                format!("`{func}` with {} arguments", args.len()),
            ));
        };
        let ints = |id: ObjId| -> Option<Vec<usize>> {
            g.seq(id)?
                .iter()
                .map(|v| g.int(*v).and_then(|i| usize::try_from(i).ok()))
                .collect()
        };
        let offset = g
            .int(*offset)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad(&self.path, "tensor offset is not an integer"))?;
        let size = ints(*size).ok_or_else(|| bad(&self.path, "tensor size is not a tuple"))?;
        let stride =
            ints(*stride).ok_or_else(|| bad(&self.path, "tensor stride is not a tuple"))?;
        if size.len() != stride.len() {
            return Err(bad(&self.path, "tensor size and stride differ in rank"));
        }
        prototree_limits::check::at_most(
            "",
            "tensor rank",
            size.len() as u64,
            maxima::MAX_TENSOR_RANK,
        )
        .map_err(|e| limit(&self.path, e))?;
        let storage = self.storage(*storage, spend, 0)?;
        let Some(dtype) = storage.kind.dtype else {
            return Ok(None);
        };
        let es = storage.kind.element_size;
        let n_storage = storage.bytes.len() / es;
        let past_storage = || {
            bad(
                &self.path,
                format!("tensor of size {size:?} (stride {stride:?}, offset {offset}) does not fit its storage of {n_storage} elements"),
            )
        };
        let numel = size
            .iter()
            .try_fold(1usize, |acc, n| acc.checked_mul(*n))
            .ok_or_else(past_storage)?;
        let bytes = if numel == 0 {
            Vec::new()
        } else {
            // Largest element index; a view never has more elements than its storage
            // (PyTorch writes expanded, zero-stride tensors contiguously).
            let last = size
                .iter()
                .zip(&stride)
                .try_fold(offset, |acc, (n, s)| {
                    acc.checked_add((n - 1).checked_mul(*s)?)
                })
                .ok_or_else(past_storage)?;
            if last >= n_storage || numel > n_storage {
                return Err(past_storage());
            }
            let n_bytes = (numel as u64).saturating_mul(es as u64);
            let total = spend.tensor_bytes.get().saturating_add(n_bytes);
            prototree_limits::check::at_most("", "tensor bytes", n_bytes, maxima::MAX_TENSOR_BYTES)
                .and_then(|_| memory::check("", "tensors of the file", total))
                .map_err(|e| limit(&self.path, e))?;
            spend.tensor_bytes.set(total);
            gather(&storage.bytes, es, offset, &size, &stride)
        };
        let t = Tensor::from_raw_buffer(&bytes, dtype, &size, &Device::Cpu)?;
        Ok(Some(t))
    }

    /// The tensor records of a state dict (an `OrderedDict` of name → tensor) at `id`.
    pub fn state_dict_entries(&self, id: ObjId) -> Result<Vec<(String, ObjId)>> {
        let g = &self.graph;
        let entries = g
            .dict(id)
            .ok_or_else(|| bad(&self.path, "the top-level object is not a state dict"))?;
        entries
            .iter()
            .map(|(k, v)| {
                g.str(*k)
                    .map(|k| (k.to_string(), *v))
                    .ok_or_else(|| bad(&self.path, "a state-dict key is not a string"))
            })
            .collect()
    }

    /// The tensor records of a pickled `nn.Module` at `id`, under the names its
    /// `state_dict()` would give them (parameters, then persistent buffers, then
    /// sub-modules, recursively; `None` entries skipped).
    pub fn module_entries(&self, id: ObjId) -> Result<Vec<(String, ObjId)>> {
        let mut out = Vec::new();
        self.collect_module(id, "", 0, &mut out)?;
        Ok(out)
    }

    fn collect_module(
        &self,
        id: ObjId,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, ObjId)>,
    ) -> Result<()> {
        let g = &self.graph;
        if depth > MAX_MODULE_DEPTH {
            return Err(bad(&self.path, "modules nested too deeply (cyclic?)"));
        }
        let non_persistent: Vec<&str> = g
            .attr(id, "_non_persistent_buffers_set")
            .and_then(|s| match g.get(s) {
                Some(Value::Set(items)) => Some(items.iter().filter_map(|i| g.str(*i)).collect()),
                _ => None,
            })
            .unwrap_or_default();
        for field in ["_parameters", "_buffers"] {
            if let Some(d) = g.attr(id, field).and_then(|d| g.dict(d)) {
                for (k, v) in d {
                    let Some(name) = g.str(*k) else { continue };
                    if matches!(g.get(*v), Some(Value::None)) {
                        continue;
                    }
                    if field == "_buffers" && non_persistent.contains(&name) {
                        continue;
                    }
                    out.push((format!("{prefix}{name}"), *v));
                }
            }
        }
        if let Some(d) = g.attr(id, "_modules").and_then(|d| g.dict(d)) {
            for (k, v) in d {
                let Some(name) = g.str(*k) else { continue };
                if matches!(g.get(*v), Some(Value::None)) {
                    continue;
                }
                self.collect_module(*v, &format!("{prefix}{name}."), depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// Rebuilds all `entries`; entries whose element type candle lacks are returned by
    /// name in the second list.
    pub fn tensors(
        &self,
        entries: &[(String, ObjId)],
    ) -> Result<(HashMap<String, Tensor>, Vec<String>)> {
        let mut map = HashMap::new();
        let mut skipped = Vec::new();
        let spend = self.spend();
        for (name, id) in entries {
            match self.tensor_at_depth(*id, 0, &spend).map_err(|e| match e {
                Error::BadFile { path, reason } => Error::BadFile {
                    path,
                    reason: format!("tensor `{name}`: {reason}"),
                },
                other => other,
            })? {
                Some(t) => {
                    map.insert(name.clone(), t);
                }
                None => skipped.push(name.clone()),
            }
        }
        Ok((map, skipped))
    }
}

fn parse_at(path: &Path, bytes: &[u8], pos: usize) -> Result<(Graph, ObjId, usize)> {
    let slice = bytes.get(pos..).unwrap_or_default();
    pickle::parse(slice).map_err(|mut source| {
        source.offset += pos;
        Error::Pickle {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A storage record: key, element type and an optional `(offset, size)` view in elements.
type StorageRecord = (String, StorageType, Option<(usize, usize)>);

/// `('storage', torch.XStorage, key, location, numel[, view_metadata])` → its record.
fn storage_pid(g: &Graph, pid: ObjId) -> Option<StorageRecord> {
    let items = g.seq(pid)?;
    if items.len() < 5 || g.str(items[0]) != Some("storage") {
        return None;
    }
    let (_, class) = g.global(items[1])?;
    let kind = StorageType::from_name(class)?;
    let key = match g.get(items[2])? {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => return None,
    };
    let view = items.get(5).and_then(|v| {
        let parts = g.seq(*v)?;
        let offset = usize::try_from(g.int(*parts.get(1)?)?).ok()?;
        let size = usize::try_from(g.int(*parts.get(2)?)?).ok()?;
        Some((offset, size))
    });
    Some((key, kind, view))
}

/// Copies a strided view into a contiguous buffer (row-major).
fn gather(bytes: &[u8], es: usize, offset: usize, size: &[usize], stride: &[usize]) -> Vec<u8> {
    let numel: usize = size.iter().product();
    let contiguous = {
        let mut expect = 1usize;
        let mut ok = true;
        for (n, s) in size.iter().zip(stride).rev() {
            if *n > 1 && *s != expect {
                ok = false;
                break;
            }
            expect *= n;
        }
        ok
    };
    if contiguous {
        return bytes[offset * es..(offset + numel) * es].to_vec();
    }
    let mut out = Vec::with_capacity(numel * es);
    let mut index = vec![0usize; size.len()];
    for _ in 0..numel {
        let at = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&bytes[at * es..(at + 1) * es]);
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_transposes() {
        // storage [0, 1, 2, 3, 4, 5] as u8, viewed 3x2 with strides (1, 3) = transpose of 2x3
        let bytes: Vec<u8> = (0..6).collect();
        assert_eq!(
            gather(&bytes, 1, 0, &[3, 2], &[1, 3]),
            vec![0, 3, 1, 4, 2, 5]
        );
        assert_eq!(gather(&bytes, 1, 2, &[2, 2], &[2, 1]), vec![2, 3, 4, 5]);
        assert_eq!(gather(&bytes, 1, 1, &[], &[]), vec![1]);
    }

    #[test]
    fn rejects_non_torch_files() {
        let p = Path::new("x");
        assert!(TorchFile::from_bytes(p, b"hello".to_vec()).is_err());
        assert!(TorchFile::from_bytes(p, b"PK\x03\x04garbage".to_vec()).is_err());
        assert!(TorchFile::from_bytes(p, b"\x80\x02K".to_vec()).is_err());
    }

    #[test]
    fn storage_types() {
        assert_eq!(
            StorageType::from_name("FloatStorage").map(|s| s.element_size),
            Some(4)
        );
        assert!(StorageType::from_name("CharStorage").is_some_and(|s| s.dtype.is_none()));
        assert!(StorageType::from_name("Nope").is_none());
    }
}

//! A pickle reader that never executes anything.
//!
//! Python's pickle format is a small stack machine whose instructions may name any Python
//! callable. This reader runs the machine over a byte slice and builds a graph of plain
//! values ([`Value`]); a named callable becomes a symbolic [`Value::Global`], a call becomes
//! an [`Instance`] that records the callable, its arguments and any state later given to it,
//! and a persistent id (how `torch.save` refers to tensor storages) becomes a
//! [`Value::PersistentId`]. Only a handful of pure data constructors are interpreted
//! (`collections.OrderedDict`, `set`, `frozenset`, `bytearray`, `_codecs.encode`,
//! `copyreg._reconstructor`), so loading a file can never run code.
//!
//! Objects live in an arena ([`Graph`]) and are referred to by [`ObjId`]; the memo shares
//! ids, so object identity is kept: a dict keyed by objects (the reference's `_out_map`,
//! keyed by `Branch` modules) points at the same ids as the module tree.
//!
//! Every opcode of protocols 0 to 5 is understood except the extension registry
//! (`EXT1/2/4`) and out-of-band buffers (`NEXT_BUFFER`), which `torch.save` and
//! `pickle.dump` to a file never write.
//!
//! Memory is bounded by the stream's length and by the limits of
//! [`prototree_limits::maxima`]: a string or byte string is never longer than the bytes
//! left; memo entries, objects, stack items and the items of one container have hard
//! maxima; open `MARK`s (unfinished containers and calls) nest at most
//! [`MAX_PICKLE_NESTING`](prototree_limits::maxima::MAX_PICKLE_NESTING) deep; and the
//! data constructors that copy (`bytearray`, `set`, `_codecs.encode`) copy at most
//! [`PICKLE_COPY_FACTOR`](prototree_limits::maxima::PICKLE_COPY_FACTOR) × the stream's
//! length in all, so a short stream that applies one to a memoised value again and again
//! is refused instead of growing without end.

use std::collections::HashMap;

use prototree_limits::{maxima, LimitError};

/// Index of an object in a [`Graph`].
pub type ObjId = usize;

/// An error while reading a pickle stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pickle stream, byte {offset}: {reason}")]
pub struct PickleError {
    /// Position of the offending opcode in the stream.
    pub offset: usize,
    /// What went wrong.
    pub reason: String,
}

/// How an [`Instance`] was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ` / `NEWOBJ_EX` / `copyreg._reconstructor`: `cls.__new__(cls, *args)`.
    NewObj,
}

/// A call recorded symbolically: an object built by a callable, with the state and items
/// the stream later gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The callable (usually a [`Value::Global`]).
    pub callable: ObjId,
    /// The argument tuple.
    pub args: ObjId,
    /// How the object was created.
    pub construct: Construct,
    /// The state given by `BUILD` (for a PyTorch module: its `__dict__`).
    pub state: Option<ObjId>,
    /// Items added with `APPEND(S)` (list subclasses).
    pub list_items: Vec<ObjId>,
    /// Items added with `SETITEM(S)` (dict subclasses such as `OrderedDict`).
    pub dict_items: Vec<(ObjId, ObjId)>,
}

impl Instance {
    /// A fresh instance, before any `BUILD` or items.
    fn new(callable: ObjId, args: ObjId, construct: Construct) -> Self {
        Self {
            callable,
            args,
            construct,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }
    }
}

/// A value of the object graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer, as little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string (`bytes` or `bytearray`).
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<ObjId>),
    /// A list.
    List(Vec<ObjId>),
    /// A dict, in insertion order.
    Dict(Vec<(ObjId, ObjId)>),
    /// A set or frozenset, in stream order.
    Set(Vec<ObjId>),
    /// A named global (class or function), never resolved.
    Global {
        /// The module, e.g. `torch._utils`.
        module: String,
        /// The name inside the module, e.g. `_rebuild_tensor_v2`.
        name: String,
    },
    /// A symbolic call.
    Instance(Instance),
    /// A persistent id (`torch.save` uses them for tensor storages).
    PersistentId(ObjId),
}

/// The objects of one pickle stream.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    values: Vec<Value>,
}

impl Graph {
    /// The value of object `id` (`None` for an id outside the graph).
    pub fn get(&self, id: ObjId) -> Option<&Value> {
        self.values.get(id)
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn push(&mut self, v: Value) -> ObjId {
        self.values.push(v);
        self.values.len() - 1
    }

    /// The string of object `id`, if it is one.
    pub fn str(&self, id: ObjId) -> Option<&str> {
        match self.get(id)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of object `id` (booleans count as 0/1).
    pub fn int(&self, id: ObjId) -> Option<i64> {
        match self.get(id)? {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The boolean of object `id` (integers count as truthy when non-zero).
    pub fn bool(&self, id: ObjId) -> Option<bool> {
        match self.get(id)? {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    pub fn seq(&self, id: ObjId) -> Option<&[ObjId]> {
        match self.get(id)? {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of a dict, or of an instance of a dict subclass (`OrderedDict`).
    pub fn dict(&self, id: ObjId) -> Option<&[(ObjId, ObjId)]> {
        match self.get(id)? {
            Value::Dict(v) => Some(v),
            Value::Instance(i) => Some(&i.dict_items),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict (or dict subclass).
    pub fn dict_get(&self, id: ObjId, key: &str) -> Option<ObjId> {
        self.dict(id)?
            .iter()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The instance at `id`, if it is one.
    pub fn instance(&self, id: ObjId) -> Option<&Instance> {
        match self.get(id)? {
            Value::Instance(i) => Some(i),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self, id: ObjId) -> Option<(&str, &str)> {
        match self.get(id)? {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// `(module, name)` of the callable that built instance `id`.
    ///
    /// The pre-1.6 `torch.save` writes the first use of each `nn.Module` class as a
    /// persistent id `('module', cls, source_file, source)`; the class is taken from it.
    pub fn class_of(&self, id: ObjId) -> Option<(&str, &str)> {
        let callable = self.instance(id)?.callable;
        match self.get(callable)? {
            Value::PersistentId(pid) => {
                let parts = self.seq(*pid)?;
                if parts.len() >= 2 && self.str(parts[0]) == Some("module") {
                    self.global(parts[1])
                } else {
                    None
                }
            }
            _ => self.global(callable),
        }
    }

    /// Attribute `name` of an instance: looked up in its `BUILD` state (a dict, or the
    /// first or second element of a `(dict, slots)` pair).
    pub fn attr(&self, id: ObjId, name: &str) -> Option<ObjId> {
        let state = self.instance(id)?.state?;
        if let Some(v) = self.dict_get(state, name) {
            return Some(v);
        }
        match self.get(state)? {
            Value::Tuple(parts) => parts.iter().find_map(|p| self.dict_get(*p, name)),
            _ => None,
        }
    }
}

/// A hard maximum of [`maxima`] as a `usize`.
fn max_of(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

enum Item {
    Obj(ObjId),
    Mark,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    graph: Graph,
    stack: Vec<Item>,
    /// Open `MARK`s on the stack.
    marks: usize,
    memo: HashMap<u64, ObjId>,
    /// Bytes and items copied by data constructors so far.
    copied: usize,
}

/// Reads one pickle stream from the start of `data`.
///
/// Returns the object graph, the id of the top-level object and the number of bytes the
/// stream occupied (`torch.save`'s pre-1.6 format concatenates several streams).
pub fn parse(data: &[u8]) -> Result<(Graph, ObjId, usize), PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_start: 0,
        graph: Graph::default(),
        stack: Vec::new(),
        marks: 0,
        memo: HashMap::new(),
        copied: 0,
    };
    let root = m.run()?;
    Ok((m.graph, root, m.pos))
}

impl<'a> Machine<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_start,
            reason: reason.into(),
        })
    }

    /// A [`LimitError`] on `field` as an error at the current opcode.
    fn over<T>(&self, field: &str, value: usize, max: u64) -> Result<T, PickleError> {
        let e = LimitError::new("", field, value, format!("over the limit of {max}"));
        self.err(e.to_string())
    }

    /// Counts `n` bytes or items copied by a data constructor against the stream's
    /// copy budget.
    fn copy_budget(&mut self, n: usize) -> Result<(), PickleError> {
        let budget = self
            .data
            .len()
            .saturating_mul(max_of(maxima::PICKLE_COPY_FACTOR))
            .max(1 << 16);
        self.copied = self.copied.saturating_add(n);
        if self.copied > budget {
            return self.over(
                "bytes copied by data constructors",
                self.copied,
                budget as u64,
            );
        }
        Ok(())
    }

    /// Pushes a stack item, within the stack and nesting limits.
    fn push_item(&mut self, item: Item) -> Result<(), PickleError> {
        if self.stack.len() >= max_of(maxima::MAX_PICKLE_CONTAINER) {
            return self.over(
                "pickle stack items",
                self.stack.len() + 1,
                maxima::MAX_PICKLE_CONTAINER,
            );
        }
        if matches!(item, Item::Mark) {
            if self.marks >= max_of(maxima::MAX_PICKLE_NESTING) {
                return self.over(
                    "pickle nesting depth",
                    self.marks + 1,
                    maxima::MAX_PICKLE_NESTING,
                );
            }
            self.marks += 1;
        }
        self.stack.push(item);
        Ok(())
    }

    /// Pops a stack item, keeping the count of open marks.
    fn pop_item(&mut self) -> Option<Item> {
        let item = self.stack.pop();
        if matches!(item, Some(Item::Mark)) {
            self.marks -= 1;
        }
        item
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err(format!(
                "truncated: needs {n} more bytes, {} left",
                self.data.len() - self.pos
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le_uint(&mut self, n: usize) -> Result<u64, PickleError> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    }

    fn len_of(&mut self, n: usize) -> Result<usize, PickleError> {
        let v = self.le_uint(n)?;
        usize::try_from(v).or_else(|_| self.err("length does not fit in memory"))
    }

    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let s = &rest[..i];
                self.pos += i + 1;
                Ok(s.strip_suffix(b"\r").unwrap_or(s))
            }
            None => self.err("truncated: missing end of line"),
        }
    }

    fn text_line(&mut self) -> Result<String, PickleError> {
        let l = self.line()?;
        match std::str::from_utf8(l) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("text argument is not UTF-8"),
        }
    }

    fn new_obj(&mut self, v: Value) -> Result<ObjId, PickleError> {
        if self.graph.len() >= max_of(maxima::MAX_PICKLE_OBJECTS) {
            return self.over(
                "pickle objects",
                self.graph.len() + 1,
                maxima::MAX_PICKLE_OBJECTS,
            );
        }
        Ok(self.graph.push(v))
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        let id = self.new_obj(v)?;
        self.push_item(Item::Obj(id))
    }

    fn pop(&mut self) -> Result<ObjId, PickleError> {
        match self.pop_item() {
            Some(Item::Obj(id)) => Ok(id),
            Some(Item::Mark) => self.err("unexpected mark on the stack"),
            None => self.err("stack underflow"),
        }
    }

    fn top(&self) -> Result<ObjId, PickleError> {
        match self.stack.last() {
            Some(Item::Obj(id)) => Ok(*id),
            Some(Item::Mark) => self.err("unexpected mark on the stack"),
            None => self.err("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<ObjId>, PickleError> {
        let mut items = Vec::new();
        loop {
            match self.pop_item() {
                Some(Item::Obj(id)) => items.push(id),
                Some(Item::Mark) => {
                    items.reverse();
                    return Ok(items);
                }
                None => return self.err("mark not found"),
            }
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let id = self.top()?;
        if self.memo.len() >= max_of(maxima::MAX_PICKLE_MEMO) && !self.memo.contains_key(&key) {
            return self.over(
                "pickle memo entries",
                self.memo.len() + 1,
                maxima::MAX_PICKLE_MEMO,
            );
        }
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(id) => {
                let id = *id;
                self.push_item(Item::Obj(id))
            }
            None => self.err(format!("memo entry {key} is missing")),
        }
    }

    fn value_mut(&mut self, id: ObjId) -> Result<&mut Value, PickleError> {
        match self.graph.values.get_mut(id) {
            Some(v) => Ok(v),
            None => Err(PickleError {
                offset: self.op_start,
                reason: "dangling object".into(),
            }),
        }
    }

    /// Refuses a container that would grow past [`maxima::MAX_PICKLE_CONTAINER`] items.
    fn container_room(&self, len: usize, more: usize) -> Result<(), PickleError> {
        let n = len.saturating_add(more);
        if n > max_of(maxima::MAX_PICKLE_CONTAINER) {
            return self.over("pickle container length", n, maxima::MAX_PICKLE_CONTAINER);
        }
        Ok(())
    }

    fn set_items(&mut self, target: ObjId, pairs: Vec<(ObjId, ObjId)>) -> Result<(), PickleError> {
        let len = match self.graph.get(target) {
            Some(Value::Dict(items)) => items.len(),
            Some(Value::Instance(inst)) => inst.dict_items.len(),
            _ => return self.err("SETITEM(S) on an object that is not a dict"),
        };
        self.container_room(len, pairs.len())?;
        match self.value_mut(target)? {
            Value::Dict(items) => items.extend(pairs),
            Value::Instance(inst) => inst.dict_items.extend(pairs),
            _ => return self.err("SETITEM(S) on an object that is not a dict"),
        }
        Ok(())
    }

    fn append_items(&mut self, target: ObjId, items: Vec<ObjId>) -> Result<(), PickleError> {
        let len = match self.graph.get(target) {
            Some(Value::List(v)) => v.len(),
            Some(Value::Instance(inst)) => inst.list_items.len(),
            _ => return self.err("APPEND(S) on an object that is not a list"),
        };
        self.container_room(len, items.len())?;
        match self.value_mut(target)? {
            Value::List(v) => v.extend(items),
            Value::Instance(inst) => inst.list_items.extend(items),
            _ => return self.err("APPEND(S) on an object that is not a list"),
        }
        Ok(())
    }

    fn global_name(&self, id: ObjId) -> Option<(String, String)> {
        self.graph
            .global(id)
            .map(|(m, n)| (m.to_string(), n.to_string()))
    }

    /// A call `callable(*args)`: pure data constructors are interpreted, everything else
    /// is recorded.
    fn call(&mut self, callable: ObjId, args: ObjId) -> Result<Value, PickleError> {
        // Only the first argument is ever used: never copy the whole tuple.
        let first = self.graph.seq(args).and_then(|s| s.first().copied());
        if let Some((module, name)) = self.global_name(callable) {
            let module = module.as_str();
            let builtin = module == "builtins" || module == "__builtin__";
            match (module, name.as_str()) {
                (_, "set" | "frozenset") if builtin => {
                    let n = first.and_then(|a| self.graph.seq(a)).map_or(0, <[_]>::len);
                    self.copy_budget(n)?;
                    let items = first
                        .and_then(|a| self.graph.seq(a))
                        .map(<[_]>::to_vec)
                        .unwrap_or_default();
                    return Ok(Value::Set(items));
                }
                (_, "bytearray") if builtin => {
                    let n = match first.and_then(|a| self.graph.get(a)) {
                        Some(Value::Bytes(b)) => b.len(),
                        _ => 0,
                    };
                    self.copy_budget(n)?;
                    let bytes = match first.and_then(|a| self.graph.get(a)) {
                        Some(Value::Bytes(b)) => b.clone(),
                        _ => Vec::new(),
                    };
                    return Ok(Value::Bytes(bytes));
                }
                ("_codecs", "encode") => {
                    // Protocol 2 writes bytes as _codecs.encode(text, 'latin1').
                    let n = first.and_then(|a| self.graph.str(a)).map_or(0, str::len);
                    self.copy_budget(n)?;
                    if let Some(text) = first.and_then(|a| self.graph.str(a)) {
                        let bytes: Option<Vec<u8>> = text
                            .chars()
                            .map(|c| u8::try_from(u32::from(c)).ok())
                            .collect();
                        if let Some(b) = bytes {
                            return Ok(Value::Bytes(b));
                        }
                    }
                }
                ("copyreg" | "copy_reg", "_reconstructor") => {
                    if let Some(cls) = first {
                        let empty = self.new_obj(Value::Tuple(Vec::new()))?;
                        return Ok(Value::Instance(Instance::new(
                            cls,
                            empty,
                            Construct::NewObj,
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(Value::Instance(Instance::new(
            callable,
            args,
            Construct::Reduce,
        )))
    }

    fn run(&mut self) -> Result<ObjId, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            if op == b'.' {
                return self.pop(); // STOP
            }
            self.step(op)?;
        }
    }

    /// Executes one opcode other than `STOP`, by family.
    fn step(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x80 | 0x95 | b'(' | b'0' | b'1' | b'2' => self.control_op(op),
            b'N' | 0x88 | 0x89 | b'J' | b'K' | b'M' | 0x8a | 0x8b | b'I' | b'L' | b'G' | b'F' => {
                self.number_op(op)
            }
            b'X' | 0x8c | 0x8d | b'V' | b'T' | b'U' | b'S' | b'B' | b'C' | 0x8e | 0x96 | 0x97
            | 0x98 => self.string_op(op),
            b')' | b't' | 0x85..=0x87 | b']' | b'l' | b'a' | b'e' => self.sequence_op(op),
            b'}' | b'd' | b's' | b'u' | 0x8f | 0x90 | 0x91 => self.mapping_op(op),
            b'c' | 0x93 | b'R' | 0x81 | 0x92 | b'i' | b'o' | b'b' => self.object_op(op),
            b'P' | b'Q' | 0x82..=0x84 => self.persistent_op(op),
            b'p' | b'q' | b'r' | 0x94 | b'g' | b'h' | b'j' => self.memo_op(op),
            other => self.unknown(other),
        }
    }

    fn unknown(&self, op: u8) -> Result<(), PickleError> {
        self.err(format!("unknown opcode 0x{op:02x}"))
    }

    /// Framing, protocol and stack manipulation: `PROTO`, `FRAME`, `MARK`, `POP`,
    /// `POP_MARK`, `DUP`.
    fn control_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return self.err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'(' => self.push_item(Item::Mark)?,
            b'0' => {
                // POP (a mark or an object)
                if self.pop_item().is_none() {
                    return self.err("stack underflow");
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let id = self.top()?;
                self.push_item(Item::Obj(id))?;
            }
            other => return self.unknown(other),
        }
        Ok(())
    }

    /// Constants and numbers: `NONE`, `NEWTRUE`/`NEWFALSE`, the binary and text integers
    /// and longs, and floats.
    fn number_op(&mut self, op: u8) -> Result<(), PickleError> {
        let v = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(self.le_uint(4)? as u32 as i32)),
            b'K' => Value::Int(i64::from(self.u8()?)),
            b'M' => Value::Int(self.le_uint(2)? as i64),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    usize::from(self.u8()?)
                } else {
                    self.len_of(4)?
                };
                long_value(self.take(n)?.to_vec())
            }
            b'I' => {
                let line = self.text_line()?;
                match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => match s.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => return self.err(format!("bad INT `{s}`")),
                    },
                }
            }
            b'L' => {
                let line = self.text_line()?;
                match line.trim_end_matches('L').parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => return self.err(format!("unsupported LONG `{line}`")),
                }
            }
            b'G' => {
                let mut a = [0u8; 8];
                a.copy_from_slice(self.take(8)?);
                Value::Float(f64::from_be_bytes(a))
            }
            b'F' => {
                let line = self.text_line()?;
                match line.parse::<f64>() {
                    Ok(f) => Value::Float(f),
                    Err(_) => return self.err(format!("bad FLOAT `{line}`")),
                }
            }
            other => return self.unknown(other),
        };
        self.push(v)
    }

    /// Text and byte strings, and the buffer opcodes.
    fn string_op(&mut self, op: u8) -> Result<(), PickleError> {
        let v = match op {
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.len_of(4)?,
                    0x8c => usize::from(self.u8()?),
                    _ => self.len_of(8)?,
                };
                let b = self.take(n)?;
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Str(s.to_string()),
                    Err(_) => return self.err("string is not UTF-8"),
                }
            }
            // raw-unicode-escape text; plain ASCII in practice
            b'V' => Value::Str(self.text_line()?),
            b'T' | b'U' => {
                // BINSTRING / SHORT_BINSTRING (Python 2 str): keep the bytes as text
                // when they are UTF-8, else as bytes.
                let n = if op == b'T' {
                    self.len_of(4)?
                } else {
                    usize::from(self.u8()?)
                };
                let b = self.take(n)?;
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Str(s.to_string()),
                    Err(_) => Value::Bytes(b.to_vec()),
                }
            }
            b'S' => {
                let l = self.text_line()?;
                Value::Str(l.trim_matches(|c| c == '\'' || c == '"').to_string())
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => self.len_of(4)?,
                    b'C' => usize::from(self.u8()?),
                    _ => self.len_of(8)?,
                };
                Value::Bytes(self.take(n)?.to_vec())
            }
            0x97 => return self.err("out-of-band buffers (NEXT_BUFFER) are not supported"),
            0x98 => return Ok(()), // READONLY_BUFFER: no-op on an in-band value
            other => return self.unknown(other),
        };
        self.push(v)
    }

    /// Tuples and lists: `EMPTY_TUPLE`, `TUPLE`, `TUPLE1-3`, `EMPTY_LIST`, `LIST`,
    /// `APPEND`, `APPENDS`.
    fn sequence_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b')' => self.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items))
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(items))
            }
            b']' => self.push(Value::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Value::List(items))
            }
            b'a' => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append_items(target, vec![item])
            }
            b'e' => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.append_items(target, items)
            }
            other => self.unknown(other),
        }
    }

    /// Dicts and sets: `EMPTY_DICT`, `DICT`, `SETITEM`, `SETITEMS`, `EMPTY_SET`,
    /// `ADDITEMS`, `FROZENSET`.
    fn mapping_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'}' => self.push(Value::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                match pairs_of(items) {
                    Some(p) => self.push(Value::Dict(p)),
                    None => self.err("DICT with an odd number of items"),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let target = self.top()?;
                self.set_items(target, vec![(k, v)])
            }
            b'u' => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                match pairs_of(items) {
                    Some(p) => self.set_items(target, p),
                    None => self.err("SETITEMS with an odd number of items"),
                }
            }
            0x8f => self.push(Value::Set(Vec::new())),
            0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                if let Some(Value::Set(v)) = self.graph.get(target) {
                    self.container_room(v.len(), items.len())?;
                }
                match self.value_mut(target)? {
                    Value::Set(v) => v.extend(items),
                    _ => return self.err("ADDITEMS on an object that is not a set"),
                }
                Ok(())
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Value::Set(items))
            }
            other => self.unknown(other),
        }
    }

    /// Globals and objects: `GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `NEWOBJ(_EX)`, `INST`,
    /// `OBJ`, `BUILD`. Nothing is resolved or called (see [`Machine::call`]).
    fn object_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'c' => {
                let module = self.text_line()?;
                let name = self.text_line()?;
                self.push(Value::Global { module, name })
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (self.graph.str(module), self.graph.str(name)) {
                    (Some(m), Some(n)) => {
                        let v = Value::Global {
                            module: m.to_string(),
                            name: n.to_string(),
                        };
                        self.push(v)
                    }
                    _ => self.err("STACK_GLOBAL needs two strings"),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.call(callable, args)?;
                self.push(v)
            }
            0x81 | 0x92 => {
                if op == 0x92 {
                    self.pop()?; // kwargs of NEWOBJ_EX
                }
                let args = self.pop()?;
                let cls = self.pop()?;
                self.push(Value::Instance(Instance::new(cls, args, Construct::NewObj)))
            }
            b'i' => {
                let module = self.text_line()?;
                let name = self.text_line()?;
                let items = self.pop_mark()?;
                let callable = self.new_obj(Value::Global { module, name })?;
                self.call_with(callable, items)
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return self.err("OBJ without a class");
                }
                let callable = items.remove(0);
                self.call_with(callable, items)
            }
            b'b' => self.build(),
            other => self.unknown(other),
        }
    }

    /// Pushes `callable(*items)` (`INST`, `OBJ`).
    fn call_with(&mut self, callable: ObjId, items: Vec<ObjId>) -> Result<(), PickleError> {
        let args = self.new_obj(Value::Tuple(items))?;
        let v = self.call(callable, args)?;
        self.push(v)
    }

    /// `BUILD`: the state on the stack becomes the state of the instance below it.
    fn build(&mut self) -> Result<(), PickleError> {
        let state = self.pop()?;
        let target = self.top()?;
        match self.value_mut(target)? {
            Value::Instance(inst) => {
                inst.state = Some(state);
                Ok(())
            }
            _ => self.err("BUILD on an object that is not an instance"),
        }
    }

    /// Persistent ids (`PERSID`, `BINPERSID`) and the unsupported extension registry.
    fn persistent_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            b'P' => {
                let s = self.text_line()?;
                let id = self.new_obj(Value::Str(s))?;
                self.push(Value::PersistentId(id))
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push(Value::PersistentId(pid))
            }
            0x82..=0x84 => self.err("the extension registry (EXT1/2/4) is not supported"),
            other => self.unknown(other),
        }
    }

    /// The memo: `PUT`, `BINPUT`, `LONG_BINPUT`, `MEMOIZE`, `GET`, `BINGET`, `LONG_BINGET`.
    fn memo_op(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)
            }
            b'p' | b'q' | b'r' => {
                let k = self.memo_key(op, "PUT")?;
                self.memo_put(k)
            }
            _ => {
                let k = self.memo_key(op, "GET")?;
                self.memo_get(k)
            }
        }
    }

    /// The key argument of a memo opcode: a text line (`PUT`, `GET`), one byte
    /// (`BINPUT`, `BINGET`) or four (`LONG_BINPUT`, `LONG_BINGET`).
    fn memo_key(&mut self, op: u8, what: &str) -> Result<u64, PickleError> {
        match op {
            b'p' | b'g' => {
                let l = self.text_line()?;
                match l.parse::<u64>() {
                    Ok(k) => Ok(k),
                    Err(_) => self.err(format!("bad {what} `{l}`")),
                }
            }
            b'q' | b'h' => Ok(u64::from(self.u8()?)),
            _ => self.le_uint(4),
        }
    }
}

fn pairs_of(items: Vec<ObjId>) -> Option<Vec<(ObjId, ObjId)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    Some(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

/// A `LONG1`/`LONG4` value: little-endian two's complement.
fn long_value(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(&bytes);
        return Value::Int(i64::from_le_bytes(buf));
    }
    Value::BigInt(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'a': [1, 2.5, None], 'b': (True, 'x')}, protocol=2)`
    const DICT_P2: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00NeX\x01\x00\x00\x00bq\x03\x88X\x01\x00\x00\x00xq\x04\x86q\x05u.";

    #[test]
    fn reads_protocol_2_containers() {
        let (g, root, used) = parse(DICT_P2).unwrap();
        assert_eq!(used, DICT_P2.len());
        let a = g.dict_get(root, "a").unwrap();
        let items = g.seq(a).unwrap();
        assert_eq!(g.int(items[0]), Some(1));
        assert_eq!(g.get(items[1]), Some(&Value::Float(2.5)));
        assert_eq!(g.get(items[2]), Some(&Value::None));
        let b = g.seq(g.dict_get(root, "b").unwrap()).unwrap();
        assert_eq!(g.bool(b[0]), Some(true));
        assert_eq!(g.str(b[1]), Some("x"));
    }

    #[test]
    fn globals_are_symbolic_and_memo_keeps_identity() {
        // `pickle.dumps({o: 2, 'k': o}, protocol=4)` with `o = mod.Cls()`, `o._index = 7`.
        let s: &[u8] = b"\x80\x04\x95-\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03mod\x94\x8c\x03Cls\x94\x93\x94)\x81\x94}\x94\x8c\x06_index\x94K\x07sbK\x02\x8c\x01k\x94h\x04u.";
        let (g, root, _) = parse(s).unwrap();
        let entries = g.dict(root).unwrap();
        assert_eq!(entries.len(), 2);
        let key = entries[0].0;
        assert_eq!(g.class_of(key), Some(("mod", "Cls")));
        assert_eq!(g.attr(key, "_index").and_then(|v| g.int(v)), Some(7));
        assert_eq!(g.int(entries[0].1), Some(2));
        // The same object, not a copy.
        assert_eq!(g.dict_get(root, "k"), Some(key));
    }

    #[test]
    fn truncated_and_unknown_streams_fail_cleanly() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\x80\x02X\xff\xff\x00\x00ab").is_err());
        let e = parse(b"\x80\x02\xff").unwrap_err();
        assert!(e.reason.contains("unknown opcode"), "{e}");
        assert!(parse(b"\x80\x02\x82\x01.").is_err());
        assert!(parse(b"\x80\x02h\x05.").is_err());
        assert!(parse(b"\x80\x02u.").is_err());
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let deep: Vec<u8> = std::iter::once(0x80)
            .chain([2])
            .chain(std::iter::repeat_n(b'(', 1001))
            .collect();
        let e = parse(&deep).unwrap_err();
        assert!(
            e.reason
                .contains("`pickle nesting depth` is 1001, over the limit of 1000"),
            "{e}"
        );
        // 1000 open marks are fine (the stream is then truncated).
        let e = parse(&deep[..1002]).unwrap_err();
        assert!(e.reason.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_entries_are_bounded() {
        // `N`, then MEMOIZE under fresh keys: one byte per entry.
        let n = maxima::MAX_PICKLE_MEMO as usize + 1;
        let mut s = vec![0x80, 4, b'N'];
        s.extend(std::iter::repeat_n(0x94, n));
        let e = parse(&s).unwrap_err();
        assert!(e.reason.contains("`pickle memo entries`"), "{e}");
        // Re-putting one key does not count again.
        let mut s = vec![0x80, 2, b'N'];
        for _ in 0..1000 {
            s.extend([b'q', 0]);
        }
        s.push(b'.');
        assert!(parse(&s).is_ok());
    }

    #[test]
    fn repeated_copies_of_a_memoised_value_are_bounded() {
        // bytes of 60 000 bytes memoised, then `bytearray(b)` 1000 times: 60 MB of
        // copies from a 64 kB stream.
        let mut s = vec![0x80, 2, b'B'];
        s.extend(60_000u32.to_le_bytes());
        s.extend(std::iter::repeat_n(b'x', 60_000));
        s.extend([b'q', 0, b'c']);
        s.extend(b"builtins\nbytearray\n");
        s.extend([b'q', 1, b'0', b'0']);
        for _ in 0..1000 {
            s.extend([b'h', 1, b'h', 0, 0x85, b'R', b'0']);
        }
        s.extend([b'N', b'.']);
        let e = parse(&s).unwrap_err();
        assert!(
            e.reason.contains("`bytes copied by data constructors`"),
            "{e}"
        );
    }

    #[test]
    fn containers_and_the_stack_are_bounded() {
        // DUP over and over: the stack would grow one item per byte.
        let n = maxima::MAX_PICKLE_CONTAINER as usize + 1;
        let mut s = vec![0x80, 2, b'N'];
        s.extend(std::iter::repeat_n(b'2', n));
        let e = parse(&s).unwrap_err();
        assert!(e.reason.contains("`pickle stack items`"), "{e}");
    }

    #[test]
    fn longs_are_twos_complement() {
        assert_eq!(long_value(vec![0xff]), Value::Int(-1));
        assert_eq!(long_value(vec![0x00, 0x01]), Value::Int(256));
        assert!(matches!(long_value(vec![1; 10]), Value::BigInt(_)));
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<Graph>();
        check::<PickleError>();
    }
}

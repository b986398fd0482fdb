//! Data sets in CUB-200-2011's own layout (the real CUB and the synthetic birds alike).
//!
//! ```text
//! root/images.txt                 <image_id> <relative path under images/>
//! root/classes.txt                <class_id> <NNN.Class_name>
//! root/image_class_labels.txt     <image_id> <class_id>
//! root/train_test_split.txt       <image_id> <1 train | 0 test>
//! root/bounding_boxes.txt         <image_id> <x> <y> <width> <height>   (optional)
//! root/parts/parts.txt            <part_id> <part name>                  (optional)
//! root/parts/part_locs.txt        <image_id> <part_id> <x> <y> <visible> (optional)
//! ```
//!
//! Each file is streamed line by line under the limits of [`prototree_limits::maxima`]
//! (`MAX_CUB_FILE_BYTES`, `MAX_CUB_LINES`, `MAX_CUB_LINE_BYTES`), at most
//! `MAX_CLASSES` classes are read, and coordinates must be finite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::io_error;
use crate::{Error, Result};

/// An axis-aligned box in pixels of the original image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BBox {
    /// Whether the point lies inside the box (edges included).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && y >= self.y && x <= self.x + self.width && y <= self.y + self.height
    }
}

/// An annotated part location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartLocation {
    /// 1-based part id (as in `parts/parts.txt`).
    pub part_id: u32,
    /// X in pixels of the original image.
    pub x: f32,
    /// Y in pixels of the original image.
    pub y: f32,
    /// Whether the part is visible.
    pub visible: bool,
}

/// Which images to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The official training split.
    Train,
    /// The official test split.
    Test,
    /// Every image.
    All,
}

impl Split {
    /// Whether `sample` belongs to this split.
    pub fn includes(self, sample: &Sample) -> bool {
        match self {
            Split::Train => sample.is_train,
            Split::Test => !sample.is_train,
            Split::All => true,
        }
    }

    /// The samples of `samples` in this split, in their order.
    pub fn select(self, samples: &[Sample]) -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| self.includes(s))
            .cloned()
            .collect()
    }
}

/// One image of a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// 1-based image id (CUB) or position + 1 (ImageFolder).
    pub image_id: u32,
    /// Absolute path of the image file.
    pub path: PathBuf,
    /// 0-based class index.
    pub class_index: usize,
    /// Bounding box of the object, if annotated.
    pub bbox: Option<BBox>,
    /// Whether the image is in the training split.
    pub is_train: bool,
}

/// A data set in CUB-200-2011 layout.
#[derive(Debug, Clone)]
pub struct CubDataset {
    root: PathBuf,
    class_names: Vec<String>,
    samples: Vec<Sample>,
    part_names: Vec<String>,
    part_locations: HashMap<u32, Vec<PartLocation>>,
}

/// Reads a whitespace-separated metadata file into `(line number, fields)` rows,
/// streaming it line by line within the file, line-count and line-length limits.
fn read_rows(path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    use prototree_limits::maxima::{MAX_CUB_FILE_BYTES, MAX_CUB_LINES, MAX_CUB_LINE_BYTES};
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    let over = |field: &str, value: u64, max: u64| Error::Invalid {
        path: path.to_path_buf(),
        reason: prototree_limits::LimitError::new(
            "",
            field,
            value,
            format!("over the limit of {max}"),
        )
        .to_string(),
    };
    if len > MAX_CUB_FILE_BYTES {
        return Err(over("file length", len, MAX_CUB_FILE_BYTES));
    }
    let mut reader = std::io::BufReader::new(file.take(MAX_CUB_FILE_BYTES));
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    for number in 1.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_CUB_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        if number > MAX_CUB_LINES {
            return Err(over("lines", number, MAX_CUB_LINES));
        }
        if buf.last() != Some(&b'\n') && n as u64 > MAX_CUB_LINE_BYTES {
            return Err(parse_err(
                path,
                number as usize,
                format!("line longer than the limit of {MAX_CUB_LINE_BYTES} bytes"),
            ));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| parse_err(path, number as usize, "not UTF-8 text"))?;
        if !line.trim().is_empty() {
            rows.push((
                number as usize,
                line.split_whitespace().map(str::to_string).collect(),
            ));
        }
    }
    Ok(rows)
}

fn parse_err(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Checks that the id in the first field of a row of `path` is `expected`: the ids of
/// `classes.txt` and `parts/parts.txt` must be 1, 2, 3, ….
fn sequential_id(
    path: &Path,
    line: usize,
    fields: &[String],
    what: &str,
    expected: usize,
) -> Result<()> {
    let id: usize = field(path, line, fields, 0, what)?;
    if id != expected {
        return Err(parse_err(
            path,
            line,
            format!("{what} {id}, expected {expected} (ids must be 1, 2, 3, ...)"),
        ));
    }
    Ok(())
}

fn field<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    fields: &[String],
    i: usize,
    what: &str,
) -> Result<T> {
    let raw = fields
        .get(i)
        .ok_or_else(|| parse_err(path, line, format!("missing {what}")))?;
    raw.parse()
        .map_err(|_| parse_err(path, line, format!("{what} `{raw}` is not a valid number")))
}

/// Reads `<id> <value>` lines into a map, rejecting duplicate ids.
fn id_map<T: std::str::FromStr>(path: &Path, what: &str) -> Result<HashMap<u32, (usize, T)>> {
    let mut map = HashMap::new();
    for (line, f) in read_rows(path)? {
        let id: u32 = field(path, line, &f, 0, "image id")?;
        let v: T = field(path, line, &f, 1, what)?;
        if map.insert(id, (line, v)).is_some() {
            return Err(parse_err(path, line, format!("duplicate image id {id}")));
        }
    }
    Ok(map)
}

/// The class name of a CUB class folder: the text after the first '.'.
pub fn class_name_of(folder: &str) -> String {
    match folder.split_once('.') {
        Some((_, name)) if !name.is_empty() => name.to_string(),
        _ => folder.to_string(),
    }
}

/// `classes.txt`: class names in id order.
fn read_classes(root: &Path) -> Result<Vec<String>> {
    let classes_path = root.join("classes.txt");
    let mut class_names = Vec::new();
    for (line, f) in read_rows(&classes_path)? {
        sequential_id(&classes_path, line, &f, "class id", class_names.len() + 1)?;
        if class_names.len() as u64 >= prototree_limits::maxima::MAX_CLASSES {
            return Err(parse_err(
                &classes_path,
                line,
                format!(
                    "more than {} classes (the limit)",
                    prototree_limits::maxima::MAX_CLASSES
                ),
            ));
        }
        let folder = f
            .get(1)
            .ok_or_else(|| parse_err(&classes_path, line, "missing class name"))?;
        class_names.push(class_name_of(folder));
    }
    if class_names.is_empty() {
        return Err(Error::Invalid {
            path: classes_path,
            reason: "no classes".into(),
        });
    }
    Ok(class_names)
}

/// `bounding_boxes.txt`, if present: the box of each image id.
fn read_boxes(root: &Path) -> Result<HashMap<u32, BBox>> {
    let bbox_path = root.join("bounding_boxes.txt");
    let mut boxes = HashMap::new();
    if !bbox_path.is_file() {
        return Ok(boxes);
    }
    for (line, f) in read_rows(&bbox_path)? {
        let id: u32 = field(&bbox_path, line, &f, 0, "image id")?;
        let b = BBox {
            x: field(&bbox_path, line, &f, 1, "x")?,
            y: field(&bbox_path, line, &f, 2, "y")?,
            width: field(&bbox_path, line, &f, 3, "width")?,
            height: field(&bbox_path, line, &f, 4, "height")?,
        };
        if !(b.width > 0.0 && b.height > 0.0) {
            return Err(parse_err(
                &bbox_path,
                line,
                "box width and height must be positive",
            ));
        }
        if ![b.x, b.y, b.width, b.height].iter().all(|v| v.is_finite()) {
            return Err(parse_err(
                &bbox_path,
                line,
                "box coordinates must be finite numbers",
            ));
        }
        if boxes.insert(id, b).is_some() {
            return Err(parse_err(
                &bbox_path,
                line,
                format!("duplicate image id {id}"),
            ));
        }
    }
    Ok(boxes)
}

/// `images.txt` joined with its labels, split and boxes: the samples, and the line of
/// each image id (every labelled image must be listed).
fn read_samples(
    root: &Path,
    num_classes: usize,
    boxes: &HashMap<u32, BBox>,
) -> Result<(Vec<Sample>, HashMap<u32, usize>)> {
    let images_path = root.join("images.txt");
    let labels_path = root.join("image_class_labels.txt");
    let split_path = root.join("train_test_split.txt");
    let labels: HashMap<u32, (usize, usize)> = id_map(&labels_path, "class id")?;
    let split: HashMap<u32, (usize, u8)> = id_map(&split_path, "train flag")?;
    let mut samples = Vec::new();
    let mut seen = HashMap::new();
    for (line, f) in read_rows(&images_path)? {
        let id: u32 = field(&images_path, line, &f, 0, "image id")?;
        let rel = f
            .get(1)
            .ok_or_else(|| parse_err(&images_path, line, "missing image path"))?;
        if seen.insert(id, line).is_some() {
            return Err(parse_err(
                &images_path,
                line,
                format!("duplicate image id {id}"),
            ));
        }
        let &(_, class_id) = labels.get(&id).ok_or_else(|| Error::Invalid {
            path: labels_path.clone(),
            reason: format!("no class for image id {id} (images.txt line {line})"),
        })?;
        if class_id == 0 || class_id > num_classes {
            let l = labels.get(&id).map(|x| x.0).unwrap_or(0);
            return Err(parse_err(
                &labels_path,
                l,
                format!("class id {class_id} out of range 1..={num_classes}"),
            ));
        }
        let &(split_line, flag) = split.get(&id).ok_or_else(|| Error::Invalid {
            path: split_path.clone(),
            reason: format!("no split for image id {id} (images.txt line {line})"),
        })?;
        if flag > 1 {
            return Err(parse_err(
                &split_path,
                split_line,
                format!("train flag {flag} is not 0 or 1"),
            ));
        }
        samples.push(Sample {
            image_id: id,
            path: root.join("images").join(rel),
            class_index: class_id - 1,
            bbox: boxes.get(&id).copied(),
            is_train: flag == 1,
        });
    }
    if samples.is_empty() {
        return Err(Error::Invalid {
            path: images_path,
            reason: "no images".into(),
        });
    }
    for (id, (line, _)) in &labels {
        if !seen.contains_key(id) {
            return Err(parse_err(
                &labels_path,
                *line,
                format!("image id {id} is not in images.txt"),
            ));
        }
    }
    Ok((samples, seen))
}

/// Part locations per image id.
type PartLocations = HashMap<u32, Vec<PartLocation>>;

/// `parts/parts.txt` and `parts/part_locs.txt`, if present: part names and each known
/// image's part locations.
fn read_parts(root: &Path, seen: &HashMap<u32, usize>) -> Result<(Vec<String>, PartLocations)> {
    let mut part_names = Vec::new();
    let mut part_locations = PartLocations::new();
    let parts_path = root.join("parts").join("parts.txt");
    if !parts_path.is_file() {
        return Ok((part_names, part_locations));
    }
    for (line, f) in read_rows(&parts_path)? {
        sequential_id(&parts_path, line, &f, "part id", part_names.len() + 1)?;
        part_names.push(f[1..].join(" "));
    }
    let locs_path = root.join("parts").join("part_locs.txt");
    if !locs_path.is_file() {
        return Ok((part_names, part_locations));
    }
    for (line, f) in read_rows(&locs_path)? {
        let id: u32 = field(&locs_path, line, &f, 0, "image id")?;
        let part_id: u32 = field(&locs_path, line, &f, 1, "part id")?;
        if part_id == 0 || part_id as usize > part_names.len() {
            return Err(parse_err(
                &locs_path,
                line,
                format!("part id {part_id} out of range"),
            ));
        }
        if !seen.contains_key(&id) {
            return Err(parse_err(
                &locs_path,
                line,
                format!("unknown image id {id}"),
            ));
        }
        let x: f32 = field(&locs_path, line, &f, 2, "x")?;
        let y: f32 = field(&locs_path, line, &f, 3, "y")?;
        if !(x.is_finite() && y.is_finite()) {
            return Err(parse_err(
                &locs_path,
                line,
                "part coordinates must be finite numbers",
            ));
        }
        let v: u8 = field(&locs_path, line, &f, 4, "visible flag")?;
        part_locations.entry(id).or_default().push(PartLocation {
            part_id,
            x,
            y,
            visible: v == 1,
        });
    }
    Ok((part_names, part_locations))
}

impl CubDataset {
    /// Opens the data set at `root`, checking every metadata file.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Invalid {
                path: root.to_path_buf(),
                reason: "not a directory (expected a data set in CUB-200-2011 layout)".into(),
            });
        }
        let class_names = read_classes(root)?;
        let boxes = read_boxes(root)?;
        let (samples, seen) = read_samples(root, class_names.len(), &boxes)?;
        let (part_names, part_locations) = read_parts(root, &seen)?;
        Ok(Self {
            root: root.to_path_buf(),
            class_names,
            samples,
            part_names,
            part_locations,
        })
    }

    /// The data set's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Class names, index = class index.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// The images of a split, in `images.txt` order.
    pub fn samples(&self, split: Split) -> Vec<Sample> {
        split.select(&self.samples)
    }
    /// Part names, index = part id − 1.
    pub fn part_names(&self) -> &[String] {
        &self.part_names
    }
    /// Annotated part locations of an image (empty when none).
    pub fn part_locations(&self, image_id: u32) -> &[PartLocation] {
        self.part_locations
            .get(&image_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

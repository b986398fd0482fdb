//! Files from strangers (issue 20): every size field of a real saved model, edited to
//! hostile values, and hostile training flags, give exit code 1 and a one-line error
//! naming the field within seconds, under an address-space limit of 4 GB (so an
//! allocation of what a hostile size claims would fail, not swap). A control run shows
//! the unedited model predicts under the same limit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::{cub_tiny, fixtures};
use serde_json::{json, Value};

/// The address-space limit of every child.
const ADDRESS_SPACE: u64 = 4 << 30;
/// Longest a refusal may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// What a run of the CLI gave.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `prototree --quiet ARGS` under the address-space limit (`prlimit`, else the
/// shell's `ulimit -v`), killed after [`DEADLINE`].
fn run_limited(args: &[String]) -> Result<Outcome> {
    let exe = env!("CARGO_BIN_EXE_prototree");
    let mut cmd = if Path::new("/usr/bin/prlimit").exists() {
        let mut c = Command::new("/usr/bin/prlimit");
        c.arg(format!("--as={ADDRESS_SPACE}")).arg("--").arg(exe);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "ulimit -v {}; exec \"$0\" \"$@\"",
                ADDRESS_SPACE / 1024
            ))
            .arg(exe);
        c
    };
    cmd.arg("--quiet")
        .args(args)
        .env_remove(prototree::limits::memory::ENV_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > DEADLINE {
            child.kill()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    Ok(Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    })
}

/// Checks that `args` fail cleanly: exit code 1, one line on stderr containing each of
/// `needles`, nothing on stdout, within the deadline.
fn refused(args: &[String], needles: &[&str], what: &str) -> Result<Duration> {
    let o = run_limited(args)?;
    let line = o.stderr.trim_end();
    ensure!(
        o.code == Some(1),
        "{what}: exit code {:?} after {:?}, stderr: {line}",
        o.code,
        o.took
    );
    ensure!(o.took < DEADLINE, "{what}: took {:?}", o.took);
    ensure!(!line.contains('\n'), "{what}: more than one line: {line}");
    ensure!(o.stdout.is_empty(), "{what}: printed output: {}", o.stdout);
    for n in needles {
        ensure!(line.contains(n), "{what}: `{n}` not in: {line}");
    }
    Ok(o.took)
}

/// The saved model of the 2026-12-01 build, copied into a fresh directory.
fn model_copy(into: &Path) -> Result<PathBuf> {
    let src = fixtures().join("models/main-2026-12-01/projected");
    let dir = into.join("model");
    std::fs::create_dir_all(&dir)?;
    for f in ["config.json", "model.safetensors", "tree.bin"] {
        std::fs::copy(src.join(f), dir.join(f))?;
    }
    Ok(dir)
}

/// One test image of the tiny data set.
fn image() -> String {
    fixtures()
        .join("cub-tiny/images/001.Bare_Shortbill_Plaineye_Doublebar_Longtail/Bare_Shortbill_Plaineye_Doublebar_Longtail_0001.png")
        .display()
        .to_string()
}

fn predict_args(model: &Path) -> Vec<String> {
    vec![
        "predict".into(),
        "--model".into(),
        model.display().to_string(),
        image(),
    ]
}

/// Sets the field at JSON `pointer` of `v` to `value`.
fn set(v: &mut Value, pointer: &str, value: Value) -> Result<()> {
    let slot = v
        .pointer_mut(pointer)
        .ok_or_else(|| anyhow::anyhow!("no field {pointer}"))?;
    *slot = value;
    Ok(())
}

#[test]
fn the_unedited_model_predicts_under_the_address_space_limit() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = model_copy(tmp.path())?;
    let o = run_limited(&predict_args(&model))?;
    ensure!(o.code == Some(0), "{:?}: {}", o.code, o.stderr);
    ensure!(o.stdout.contains("Bare_Shortbill"), "{}", o.stdout);
    Ok(())
}

#[test]
fn hostile_config_json_sizes_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = model_copy(tmp.path())?;
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json"))?)?;
    let huge = [
        json!(2147483648u64),
        json!(9223372036854775808u64),
        json!(-1),
        json!(1e30),
    ];
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    for v in huge
        .iter()
        .chain([&json!(0), &json!(17), &json!(60), &json!(null)])
    {
        cases.push(("/tree/depth", v.clone(), "depth"));
    }
    for v in huge.iter().chain([&json!(0), &json!(16385)]) {
        cases.push(("/tree/proto_dim", v.clone(), "proto_dim"));
    }
    for v in huge.iter().chain([&json!(0), &json!(1), &json!(100001)]) {
        cases.push(("/tree/num_classes", v.clone(), "num_classes"));
    }
    for v in huge.iter().chain([
        &json!(0),
        &json!(7),
        &json!(4097),
        &json!(1000000),
        &json!(4294967296u64),
    ]) {
        cases.push(("/preprocessing/image_size", v.clone(), "image_size"));
    }
    for v in [json!(null), json!(1e30), json!(1e39), json!(-1e39)] {
        cases.push(("/preprocessing/mean/0", v, "mean[0]"));
    }
    for v in [json!(0), json!(-1), json!(1e-30), json!(null), json!(1e39)] {
        cases.push(("/preprocessing/std/1", v, "std[1]"));
    }
    for v in huge.iter().chain([&json!(0)]) {
        cases.push(("/train/batch_size", v.clone(), "batch_size"));
        cases.push(("/train/epochs", v.clone(), "epochs"));
    }
    for v in [json!(null), json!(-1), json!(0), json!(1e30)] {
        cases.push(("/train/lr", v.clone(), "lr"));
        cases.push(("/train/gamma", v, "gamma"));
    }
    let mut slowest = Duration::ZERO;
    for (pointer, value, field) in cases {
        let mut edited = original.clone();
        set(&mut edited, pointer, value.clone())?;
        std::fs::write(model.join("config.json"), serde_json::to_vec(&edited)?)?;
        let what = format!("config.json {pointer} = {value}");
        slowest = slowest.max(refused(
            &predict_args(&model),
            &["config.json", field],
            &what,
        )?);
    }
    // A class-name list of 100 001 names (with the count to match).
    let mut edited = original.clone();
    let names: Vec<String> = (0..100_001).map(|i| format!("c{i}")).collect();
    set(&mut edited, "/class_names", json!(names))?;
    set(&mut edited, "/tree/num_classes", json!(100_001))?;
    std::fs::write(model.join("config.json"), serde_json::to_vec(&edited)?)?;
    refused(
        &predict_args(&model),
        &["config.json", "num_classes", "100000"],
        "100 001 classes",
    )?;
    eprintln!("slowest refusal: {slowest:?}");
    Ok(())
}

/// `model.safetensors` with its header replaced by `header` (data kept).
fn with_header(bytes: &[u8], header: &Value) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let h = serde_json::to_vec(header)?;
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    Ok(out)
}

#[test]
fn hostile_safetensors_shapes_and_values_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = model_copy(tmp.path())?;
    let path = model.join("model.safetensors");
    let original = std::fs::read(&path)?;
    let n = u64::from_le_bytes(original[..8].try_into()?) as usize;
    let header: Value = serde_json::from_slice(&original[8..8 + n])?;
    let name = "_add_on.0.weight";
    let cases = [
        ("/shape", json!([2147483648u64, 128, 1, 1])),
        (
            "/shape",
            json!([4611686018427387904u64, 4611686018427387904u64]),
        ),
        ("/shape", json!([-1, 128, 1, 1])),
        (
            "/shape",
            json!([
                8, 128, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
            ]),
        ),
        ("/data_offsets", json!([0, 1099511627776u64])),
    ];
    for (field, value) in cases {
        let mut h = header.clone();
        set(
            &mut h,
            &format!("/{}{field}", name.replace('/', "~1")),
            value.clone(),
        )?;
        std::fs::write(&path, with_header(&original, &h)?)?;
        refused(
            &predict_args(&model),
            &["model.safetensors", name],
            &format!("{name}{field} = {value}"),
        )?;
    }
    // A header length claiming 2^62 bytes.
    let mut b = original.clone();
    b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    std::fs::write(&path, &b)?;
    refused(
        &predict_args(&model),
        &["model.safetensors", "header length"],
        "header length 2^62",
    )?;
    // A NaN weight: refused, not predicted from.
    let mut b = original.clone();
    let start = 8 + n;
    b[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, &b)?;
    refused(
        &predict_args(&model),
        &["model.safetensors", name, "NaN"],
        "a NaN weight",
    )?;
    Ok(())
}

#[test]
fn hostile_tree_bin_lengths_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = model_copy(tmp.path())?;
    let path = model.join("tree.bin");
    let original = std::fs::read(&path)?;
    // bincode varints: format_version, depth, branch_states length (3), the three
    // states, projections length (2), the records.
    assert_eq!(&original[..7], &[1, 2, 3, 0, 0, 2, 2]);
    let varint_u64 = |v: u64| {
        let mut b = vec![0xfd];
        b.extend(v.to_le_bytes());
        b
    };
    let splice = |at: usize, with: &[u8]| {
        let mut b = original[..at].to_vec();
        b.extend(with);
        b.extend(&original[at + 1..]);
        b
    };
    // A length field claiming 2^62 elements costs at most the bytes that are there:
    // bincode (under its claim limit) reads element by element and meets garbage.
    let cases = [
        (splice(2, &varint_u64(1 << 62)), "corrupt or truncated"),
        (splice(6, &varint_u64(u64::MAX)), "corrupt or truncated"),
        (splice(6, &varint_u64(1 << 40)), "corrupt or truncated"),
        (splice(1, &[0xfc, 0, 0, 0, 0x80]), "depth 2147483648"),
    ];
    for (i, (bytes, needle)) in cases.iter().enumerate() {
        std::fs::write(&path, bytes)?;
        refused(
            &predict_args(&model),
            &["tree.bin", needle],
            &format!("tree.bin case {i}"),
        )?;
    }
    // A tree.bin of 65 MB (over the limit) is refused before it is read.
    std::fs::write(&path, vec![0u8; (64 << 20) + 1])?;
    refused(
        &predict_args(&model),
        &["tree.bin", "file length"],
        "a 65 MB tree.bin",
    )?;
    Ok(())
}

#[test]
fn hostile_training_flags_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("run").display().to_string();
    let base = [
        "train",
        "--data",
        &cub_tiny(),
        "--out",
        &out,
        "--backbone",
        "small-cnn",
    ];
    let cases: [(&[&str], &str); 19] = [
        // Values that do not parse at all: clap's message, on one line, exit code 1.
        (&["--depth=-1"], "--depth"),
        (&["--image-size", "99999999999999999999"], "--image-size"),
        (&["--protocol", "cub"], "--protocol"),
        (&["--image-size", "1000000"], "image_size"),
        (&["--image-size", "4"], "image_size"),
        (&["--depth", "60"], "depth"),
        (&["--depth", "0"], "depth"),
        (&["--proto-dim", "1099511627776"], "proto_dim"),
        (&["--batch-size", "0"], "batch_size"),
        (&["--batch-size", "9223372036854775807"], "batch_size"),
        (&["--epochs", "0"], "epochs"),
        (&["--epochs", "9223372036854775807"], "epochs"),
        (&["--lr-net", "nan"], "lr_net"),
        (&["--lr", "inf"], "lr"),
        (&["--lr-block=-1"], "lr_block"),
        (&["--gamma", "1e30"], "gamma"),
        (&["--weight-decay", "nan"], "weight_decay"),
        (&["--milestones", "5,3"], "milestones"),
        // Each within its maximum, together far over the memory budget.
        (&["--image-size", "4096", "--batch-size", "4096"], "memory"),
    ];
    for (flags, field) in cases {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        refused(&args, &[field], &format!("train {flags:?}"))?;
        ensure!(
            !Path::new(&out).exists(),
            "train {flags:?} made a run directory"
        );
    }
    // The other commands' numeric flags.
    let model = model_copy(tmp.path())?.display().to_string();
    let pruned = tmp.path().join("pruned").display().to_string();
    let data = cub_tiny();
    let cases: [(Vec<&str>, &str); 7] = [
        (
            vec![
                "eval",
                "--model",
                &model,
                "--data",
                &data,
                "--batch-size",
                "0",
            ],
            "--batch-size",
        ),
        (
            vec![
                "eval",
                "--model",
                &model,
                "--data",
                &data,
                "--explanations",
                "--max-images",
                "0",
            ],
            "--max-images",
        ),
        (
            vec![
                "eval",
                "--model",
                &model,
                "--data",
                &data,
                "--batch-size",
                "100000000",
            ],
            "--batch-size",
        ),
        (
            vec!["prune", "--model", &model, "--out", &pruned, "--tau", "nan"],
            "--tau",
        ),
        (
            vec!["prune", "--model", &model, "--out", &pruned, "--tau", "2"],
            "--tau",
        ),
        (
            vec![
                "prune",
                "--model",
                &model,
                "--out",
                &pruned,
                "--collapse-constant",
            ],
            "--data",
        ),
        (
            vec!["demo", "--out", &pruned, "--augment", "sideways"],
            "--augment",
        ),
    ];
    for (args, field) in cases {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        refused(&args, &[field], &format!("{args:?}"))?;
    }
    Ok(())
}

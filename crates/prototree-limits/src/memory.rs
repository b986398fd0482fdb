//! The memory budget: what a model, a batch or the tensors of a file may take.
//!
//! The budget is, in this order:
//! 1. `PROTOTREE_MEMORY_LIMIT` when set: bytes, or a number with a `K`, `M`, `G` or `T`
//!    suffix (powers of 1024), e.g. `8G`;
//! 2. else the smaller of `MemAvailable` (`/proc/meminfo`) and half the process's
//!    address-space limit (`/proc/self/limits`; half, because thread stacks, the
//!    allocator's reservations and mapped files take address space too);
//! 3. else (neither readable: not Linux) [`FALLBACK_BYTES`].
//!
//! An estimate over the budget is refused before anything is allocated, so a hostile
//! size gives an error naming the field instead of an aborted process or a machine that
//! swaps until the kernel kills it.

use crate::LimitError;

/// The environment variable that sets the budget.
pub const ENV_VAR: &str = "PROTOTREE_MEMORY_LIMIT";
/// The budget where the machine's memory cannot be read.
pub const FALLBACK_BYTES: u64 = 8 << 30;

/// The memory budget and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure came from, for error messages.
    pub source: &'static str,
}

/// `8G`, `512M`, `1048576`: bytes, with an optional binary suffix.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 10),
        (i, 'm' | 'M') => (&t[..i], 20),
        (i, 'g' | 'G') => (&t[..i], 30),
        (i, 't' | 'T') => (&t[..i], 40),
        _ => (t, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1u64 << shift)
}

/// `MemAvailable` of `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The soft address-space limit of `/proc/self/limits` text, in bytes (`None`: unlimited).
fn address_space(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The budget from the environment and the machine (see the module docs).
pub fn budget() -> Result<Budget, LimitError> {
    if let Ok(v) = std::env::var(ENV_VAR) {
        return match parse_bytes(&v) {
            Some(bytes) => Ok(Budget {
                bytes,
                source: ENV_VAR,
            }),
            None => Err(LimitError::new(
                "environment",
                ENV_VAR,
                format!("`{v}`"),
                "must be a byte count such as 8G or 512M",
            )),
        };
    }
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t));
    let space = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| address_space(&t))
        .map(|b| b / 2);
    Ok(match (avail, space) {
        (Some(a), Some(s)) if s < a => Budget {
            bytes: s,
            source: "half the address-space limit",
        },
        (Some(a), _) => Budget {
            bytes: a,
            source: "MemAvailable",
        },
        (None, Some(s)) => Budget {
            bytes: s,
            source: "half the address-space limit",
        },
        (None, None) => Budget {
            bytes: FALLBACK_BYTES,
            source: "the fallback budget",
        },
    })
}

/// Human-readable bytes: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses `bytes` (an estimate of what `field` of `file` needs) over the budget.
pub fn check(file: &str, field: &str, bytes: u64) -> Result<(), LimitError> {
    let b = budget()?;
    if bytes <= b.bytes {
        Ok(())
    } else {
        Err(LimitError::new(
            file,
            field,
            format!("about {} of memory", human(bytes)),
            format!(
                "over the memory budget of {} ({}; set {ENV_VAR} to change it)",
                human(b.bytes),
                b.source
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes(" 512m "), Some(512 << 20));
        assert_eq!(parse_bytes("2T"), Some(2 << 40));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }

    #[test]
    fn proc_files_parse() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   2000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(2_048_000_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax address space         4294967296           unlimited            bytes\n";
        assert_eq!(address_space(limits), Some(4_294_967_296));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space(unlimited), None);
    }

    #[test]
    fn the_budget_is_positive_and_refusals_name_the_field() {
        // Environment variables are process-wide: this test only reads them.
        let b = budget();
        if std::env::var(ENV_VAR).is_err() {
            assert!(b.is_ok_and(|b| b.bytes > 0));
            let e = check("m/config.json", "prototypes", u64::MAX).unwrap_err();
            assert!(e.to_string().starts_with("m/config.json: `prototypes` is about 16.0 EiB of memory, over the memory budget of"), "{e}");
        }
        assert_eq!(human(10), "10 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}

//! Run fingerprints: a JSON text of the settings a checkpoint must share with the run that
//! resumes it, and the settings by which two fingerprints differ.

use serde_json::Value;

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The settings (dotted JSON paths) that differ between two JSON fingerprints, as
/// `path: a vs b` (a setting only one of them has is `(absent)` in the other), for error
/// messages.
pub fn fingerprint_differences(a: &str, b: &str) -> Vec<String> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_default();
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten("", &parse(a), &mut fa);
    flatten("", &parse(b), &mut fb);
    let mut diffs = Vec::new();
    for (k, va) in &fa {
        match fb.iter().find(|(kb, _)| kb == k) {
            Some((_, vb)) if vb == va => {}
            Some((_, vb)) => diffs.push(format!("{k}: {va} vs {vb}")),
            None => diffs.push(format!("{k}: {va} vs (absent)")),
        }
    }
    for (k, vb) in &fb {
        if !fa.iter().any(|(ka, _)| ka == k) {
            diffs.push(format!("{k}: (absent) vs {vb}"));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_differences_are_named() {
        let d = fingerprint_differences(
            r#"{"a":1,"s":{"lr":0.1,"x":2}}"#,
            r#"{"a":1,"s":{"lr":0.5}}"#,
        );
        assert_eq!(d, vec!["s.lr: 0.1 vs 0.5", "s.x: 2 vs (absent)"]);
        let d = fingerprint_differences(r#"{"a":1}"#, r#"{"a":1,"p":"plain"}"#);
        assert_eq!(d, vec![r#"p: (absent) vs "plain""#]);
    }
}

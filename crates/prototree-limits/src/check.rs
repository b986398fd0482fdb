//! The checks: a count at most a maximum, in a range, a float finite and in range.

use crate::LimitError;

/// `value` if it is at most `max`.
pub fn at_most(file: &str, field: &str, value: u64, max: u64) -> Result<u64, LimitError> {
    if value <= max {
        Ok(value)
    } else {
        Err(LimitError::new(
            file,
            field,
            value,
            format!("over the limit of {max}"),
        ))
    }
}

/// `value` if it lies in `min..=max`.
pub fn in_range(
    file: &str,
    field: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<u64, LimitError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(LimitError::new(
            file,
            field,
            value,
            format!("must be between {min} and {max}"),
        ))
    }
}

/// Which end of a float range is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// `min <= v <= max`.
    Closed,
    /// `min < v <= max`.
    AboveMin,
}

/// `value` if it is finite and in the range (`min..=max`, or `min` excluded).
pub fn finite_in(
    file: &str,
    field: &str,
    value: f64,
    min: f64,
    max: f64,
    bounds: Bounds,
) -> Result<f64, LimitError> {
    let low_ok = match bounds {
        Bounds::Closed => value >= min,
        Bounds::AboveMin => value > min,
    };
    if value.is_finite() && low_ok && value <= max {
        Ok(value)
    } else {
        let op = if bounds == Bounds::Closed { ">=" } else { ">" };
        Err(LimitError::new(
            file,
            field,
            value,
            format!("must be finite, {op} {min} and <= {max}"),
        ))
    }
}

/// `a * b`, or a [`LimitError`] on `field` when the product overflows 64 bits.
pub fn product(file: &str, field: &str, factors: &[u64]) -> Result<u64, LimitError> {
    factors
        .iter()
        .try_fold(1u64, |acc, f| acc.checked_mul(*f))
        .ok_or_else(|| {
            LimitError::new(
                file,
                field,
                format!("{factors:?}"),
                "the product overflows 64 bits",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(at_most("f", "n", 3, 3), Ok(3));
        assert_eq!(
            at_most("f", "n", 4, 3).unwrap_err().to_string(),
            "f: `n` is 4, over the limit of 3"
        );
        assert!(in_range("f", "n", 0, 1, 3).is_err());
        assert_eq!(in_range("f", "n", 2, 1, 3), Ok(2));
        assert_eq!(product("f", "shape", &[2, 3]), Ok(6));
        assert!(product("f", "shape", &[1 << 40, 1 << 40]).is_err());
    }

    #[test]
    fn floats() {
        assert!(finite_in("f", "x", 0.0, 0.0, 1.0, Bounds::Closed).is_ok());
        assert!(finite_in("f", "x", 0.0, 0.0, 1.0, Bounds::AboveMin).is_err());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2.0, -1.0] {
            let e = finite_in("f", "x", bad, 0.0, 1.0, Bounds::Closed).unwrap_err();
            assert!(e.to_string().contains("must be finite"), "{e}");
        }
    }
}

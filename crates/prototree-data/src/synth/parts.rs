//! The parts of a synthetic bird, their variants, and the class ↔ variant table.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Variant index per part, in part-id order (crest, beak, eye, wing, tail, then breast
/// and legs when the data set has them): one entry per part of the data set.
pub type Variants = Vec<usize>;

/// Parts of a default bird (crest, beak, eye, wing, tail).
pub const DEFAULT_PARTS: usize = 5;
/// Most parts a bird can have (the default five, breast, legs).
pub const MAX_PARTS: usize = 7;

/// Part id of the crest (1-based, as in `parts/parts.txt`).
pub const PART_CREST: u32 = 1;
/// Part id of the beak.
pub const PART_BEAK: u32 = 2;
/// Part id of the eye.
pub const PART_EYE: u32 = 3;
/// Part id of the wing.
pub const PART_WING: u32 = 4;
/// Part id of the tail.
pub const PART_TAIL: u32 = 5;
/// Part id of the breast (with `parts` at least 6).
pub const PART_BREAST: u32 = 6;
/// Part id of the legs (with `parts` 7).
pub const PART_LEGS: u32 = 7;

/// Part names, index = part id − 1; a data set with `parts` parts has the first `parts`.
pub const PART_NAMES: [&str; MAX_PARTS] =
    ["crest", "beak", "eye", "wing", "tail", "breast", "legs"];

/// Variant names per part.
pub const VARIANT_NAMES: [[&str; 3]; MAX_PARTS] = [
    ["none", "spiky red", "round blue"],
    ["short yellow", "long orange", "hooked black"],
    ["plain", "white ring", "cyan ring"],
    ["plain", "white bar", "two magenta bars"],
    ["green fan", "black fork", "long orange"],
    ["plain", "orange patch", "white bib"],
    ["short grey", "long pink", "long black"],
];

/// Name tokens per variant, for class names.
const TOKENS: [[&str; 3]; MAX_PARTS] = [
    ["Bare", "Spiky", "Tufted"],
    ["Shortbill", "Longbill", "Hookbill"],
    ["Plaineye", "Whiteeye", "Cyaneye"],
    ["Plainwing", "Barwing", "Doublebar"],
    ["Fantail", "Forktail", "Longtail"],
    ["Plainbreast", "Orangebreast", "Whitebib"],
    ["Shortleg", "Pinkleg", "Blackleg"],
];

/// Largest number of classes of birds with `parts` parts whose every two differ in at
/// least two parts (a code of Hamming distance 2 in {0,1,2}^parts has at most
/// 3^(parts − 1) words: 81 for the default five parts).
pub fn max_classes_two_parts_apart(parts: usize) -> usize {
    3usize.pow(parts.saturating_sub(1) as u32)
}

/// Largest number of classes of birds with `parts` parts: every combination of variants
/// (3^parts: 243 for five parts). Above [`max_classes_two_parts_apart`], some pairs of
/// classes differ in one part only.
pub fn max_classes(parts: usize) -> usize {
    3usize.pow(parts as u32)
}

/// A class's name from its variants, e.g. `Spiky_Hookbill_Whiteeye_Barwing_Forktail`.
pub fn class_name(v: &[usize]) -> String {
    v.iter()
        .zip(TOKENS.iter())
        .map(|(&k, tokens)| tokens.get(k).copied().unwrap_or("Unknown"))
        .collect::<Vec<_>>()
        .join("_")
}

fn hamming(a: &[usize], b: &[usize]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Chooses `n` distinct variant combinations of birds with `parts` parts (`n <=`
/// [`max_classes`], `parts` in `DEFAULT_PARTS..=MAX_PARTS`): every two classes differ in
/// at least two parts when `n <=` [`max_classes_two_parts_apart`] (in at least one above,
/// as CUB's closest species do), and every variant of every part is used by at least two
/// classes when `n >= 9` (by at least one when `n >= 3`).
pub fn choose_classes(n: usize, parts: usize, seed: u64) -> Option<Vec<Variants>> {
    if !(DEFAULT_PARTS..=MAX_PARTS).contains(&parts) || n > max_classes(parts) {
        return None;
    }
    let mut all: Vec<Variants> = Vec::with_capacity(max_classes(parts));
    for i in 0..max_classes(parts) {
        let mut v = vec![0usize; parts];
        let mut x = i;
        for slot in v.iter_mut() {
            *slot = x % 3;
            x /= 3;
        }
        all.push(v);
    }
    let min_distance = if n <= max_classes_two_parts_apart(parts) {
        2
    } else {
        1
    };
    let need = match n {
        0..=2 => 0,
        3..=8 => 1,
        _ => 2,
    };
    for attempt in 0..2000u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(attempt.wrapping_mul(7919)));
        all.shuffle(&mut rng);
        let mut chosen: Vec<Variants> = Vec::with_capacity(n);
        if need == 1 {
            // Three classes that use every variant of every part between them (a random
            // permutation of the variants per part): coverage holds by construction.
            let perms: Vec<[usize; 3]> = (0..parts)
                .map(|_| {
                    let mut p = [0, 1, 2];
                    p.shuffle(&mut rng);
                    p
                })
                .collect();
            chosen.extend((0..3).map(|k| perms.iter().map(|p| p[k]).collect::<Variants>()));
        }
        for v in &all {
            if chosen.len() == n {
                break;
            }
            if chosen.iter().all(|c| hamming(c, v) >= min_distance) {
                chosen.push(v.clone());
                if chosen.len() == n {
                    break;
                }
            }
        }
        if chosen.len() < n {
            continue;
        }
        let covered =
            (0..parts).all(|p| (0..3).all(|k| chosen.iter().filter(|c| c[p] == k).count() >= need));
        if covered {
            return Some(chosen);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_rules_hold() {
        for n in [10, 12, 20, 40] {
            let c = choose_classes(n, 5, 3).unwrap();
            assert_eq!(c.len(), n);
            for i in 0..n {
                for j in 0..i {
                    assert!(hamming(&c[i], &c[j]) >= 2);
                }
            }
            for p in 0..5 {
                for k in 0..3 {
                    assert!(
                        c.iter().filter(|v| v[p] == k).count() >= 2,
                        "n {n} part {p} variant {k}"
                    );
                }
            }
        }
        for n in 3..=8 {
            for seed in 0..5 {
                let c = choose_classes(n, 5, seed).unwrap();
                assert_eq!(c.len(), n);
                assert!((0..5).all(|p| (0..3).all(|k| c.iter().any(|v| v[p] == k))));
                for i in 0..n {
                    for j in 0..i {
                        assert!(hamming(&c[i], &c[j]) >= 2);
                    }
                }
            }
        }
        assert_eq!(choose_classes(12, 5, 1), choose_classes(12, 5, 1));
        // CUB's class count: all distinct, every variant used by many classes.
        let c = choose_classes(200, 5, 0).unwrap();
        for i in 0..c.len() {
            for j in 0..i {
                assert!(hamming(&c[i], &c[j]) >= 1);
            }
        }
        assert!((0..5).all(|p| (0..3).all(|k| c.iter().filter(|v| v[p] == k).count() >= 2)));
        assert_eq!(choose_classes(243, 5, 0).map(|c| c.len()), Some(243));
        assert_eq!(choose_classes(244, 5, 0), None);
    }

    #[test]
    fn more_parts_give_more_classes_under_the_same_rules() {
        for parts in [6, 7] {
            for n in [12, 40, 60] {
                let c = choose_classes(n, parts, 0).unwrap();
                assert_eq!(c.len(), n);
                assert!(c.iter().all(|v| v.len() == parts));
                for i in 0..n {
                    for j in 0..i {
                        assert!(hamming(&c[i], &c[j]) >= 2, "parts {parts} n {n}");
                    }
                }
                assert!(
                    (0..parts).all(|p| (0..3).all(|k| c.iter().filter(|v| v[p] == k).count() >= 2))
                );
            }
        }
        assert_eq!(choose_classes(2188, 7, 0), None);
        assert_eq!(choose_classes(12, 8, 0), None);
        assert_eq!(choose_classes(12, 4, 0), None);
        assert_eq!(
            class_name(&[1, 2, 1, 1, 1, 2, 1]),
            "Spiky_Hookbill_Whiteeye_Barwing_Forktail_Whitebib_Pinkleg"
        );
    }
}

//! The parts of a synthetic bird, their variants, and the class ↔ variant table.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Variant index per part, in part-id order (crest, beak, eye, wing, tail).
pub type Variants = [usize; 5];

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

/// Part names, index = part id − 1.
pub const PART_NAMES: [&str; 5] = ["crest", "beak", "eye", "wing", "tail"];

/// Variant names per part.
pub const VARIANT_NAMES: [[&str; 3]; 5] = [
    ["none", "spiky red", "round blue"],
    ["short yellow", "long orange", "hooked black"],
    ["plain", "white ring", "cyan ring"],
    ["plain", "white bar", "two magenta bars"],
    ["green fan", "black fork", "long orange"],
];

/// Name tokens per variant, for class names.
const TOKENS: [[&str; 3]; 5] = [
    ["Bare", "Spiky", "Tufted"],
    ["Shortbill", "Longbill", "Hookbill"],
    ["Plaineye", "Whiteeye", "Cyaneye"],
    ["Plainwing", "Barwing", "Doublebar"],
    ["Fantail", "Forktail", "Longtail"],
];

/// Largest number of classes whose every two differ in at least two parts (a code of
/// Hamming distance 2 in {0,1,2}^5 has at most 3^4 = 81 words).
pub const MAX_CLASSES_TWO_PARTS_APART: usize = 81;

/// Largest number of classes: every combination of variants (3^5). Above
/// [`MAX_CLASSES_TWO_PARTS_APART`], some pairs of classes differ in one part only.
pub const MAX_CLASSES: usize = 243;

/// A class's name from its variants, e.g. `Spiky_Hookbill_Whiteeye_Barwing_Forktail`.
pub fn class_name(v: &Variants) -> String {
    (0..5)
        .map(|p| TOKENS[p][v[p]])
        .collect::<Vec<_>>()
        .join("_")
}

fn hamming(a: &Variants, b: &Variants) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Chooses `n` distinct variant combinations (`n <= MAX_CLASSES`): every two classes differ
/// in at least two parts when `n <= MAX_CLASSES_TWO_PARTS_APART` (in at least one above,
/// as CUB's closest species do), and every variant of every part is used by at least two
/// classes when `n >= 9` (by at least one when `n >= 3`).
pub fn choose_classes(n: usize, seed: u64) -> Option<Vec<Variants>> {
    let mut all: Vec<Variants> = Vec::with_capacity(243);
    for i in 0..243usize {
        let mut v = [0usize; 5];
        let mut x = i;
        for slot in v.iter_mut() {
            *slot = x % 3;
            x /= 3;
        }
        all.push(v);
    }
    if n > MAX_CLASSES {
        return None;
    }
    let min_distance = if n <= MAX_CLASSES_TWO_PARTS_APART {
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
            let perms: Vec<[usize; 3]> = (0..5)
                .map(|_| {
                    let mut p = [0, 1, 2];
                    p.shuffle(&mut rng);
                    p
                })
                .collect();
            chosen.extend((0..3).map(|k| std::array::from_fn(|part| perms[part][k])));
        }
        for v in &all {
            if chosen.len() == n {
                break;
            }
            if chosen.iter().all(|c| hamming(c, v) >= min_distance) {
                chosen.push(*v);
                if chosen.len() == n {
                    break;
                }
            }
        }
        if chosen.len() < n {
            continue;
        }
        let covered =
            (0..5).all(|p| (0..3).all(|k| chosen.iter().filter(|c| c[p] == k).count() >= need));
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
            let c = choose_classes(n, 3).unwrap();
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
                let c = choose_classes(n, seed).unwrap();
                assert_eq!(c.len(), n);
                assert!((0..5).all(|p| (0..3).all(|k| c.iter().any(|v| v[p] == k))));
                for i in 0..n {
                    for j in 0..i {
                        assert!(hamming(&c[i], &c[j]) >= 2);
                    }
                }
            }
        }
        assert_eq!(choose_classes(12, 1), choose_classes(12, 1));
        // CUB's class count: all distinct, every variant used by many classes.
        let c = choose_classes(200, 0).unwrap();
        for i in 0..c.len() {
            for j in 0..i {
                assert!(hamming(&c[i], &c[j]) >= 1);
            }
        }
        assert!((0..5).all(|p| (0..3).all(|k| c.iter().filter(|v| v[p] == k).count() >= 2)));
        assert_eq!(choose_classes(243, 0).map(|c| c.len()), Some(243));
        assert_eq!(choose_classes(244, 0), None);
    }
}

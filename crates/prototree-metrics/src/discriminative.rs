//! Whether decision nodes look at parts that separate their subtrees' classes, from the
//! generator's ground truth (the synthetic birds' class ↔ part-variant table).
//!
//! A decision node sends an image to its "present" subtree when the prototype is found.
//! A part *separates* the node's subtrees when the set of its variants among the classes
//! served by the absent subtree differs from the set among the classes served by the
//! present subtree; only such a part can tell the two sides apart.

use prototree_data::synth::SynthTruth;
use prototree_tree::topology::Topology;

use crate::parts::PartSet;

/// For every heap node of `topo` (branches then leaves), which classes it serves: the top
/// classes (`leaf_top[leaf]`) of the reachable leaves below it. Unreachable nodes serve
/// none.
pub fn classes_below(topo: &Topology, leaf_top: &[usize], num_classes: usize) -> Vec<Vec<bool>> {
    let reach = topo.reachable_heap();
    let nb = topo.num_branches();
    let mut out = vec![vec![false; num_classes]; reach.len()];
    for h in (0..reach.len()).rev() {
        if !reach[h] {
            continue;
        }
        if h >= nb {
            if let Some(&c) = leaf_top.get(h - nb) {
                if c < num_classes {
                    out[h][c] = true;
                }
            }
        } else {
            let (l, r) = (2 * h + 1, 2 * h + 2);
            let merged: Vec<bool> = (0..num_classes)
                .map(|c| (reach[l] && out[l][c]) || (reach[r] && out[r][c]))
                .collect();
            out[h] = merged;
        }
    }
    out
}

/// The class ↔ variant table in the data set's part order: `table[class][part]` is the
/// variant. Parts are matched to `truth.parts` by name; `None` when a part or the class
/// count does not match.
pub fn variant_table(
    truth: &SynthTruth,
    part_names: &[String],
    num_classes: usize,
) -> Option<Vec<Vec<usize>>> {
    if truth.classes.len() != num_classes {
        return None;
    }
    let idx: Vec<usize> = part_names
        .iter()
        .map(|p| {
            truth
                .parts
                .iter()
                .position(|t| t.eq_ignore_ascii_case(p.trim()))
        })
        .collect::<Option<_>>()?;
    truth
        .classes
        .iter()
        .map(|(_, v)| idx.iter().map(|&i| v.get(i).copied()).collect())
        .collect()
}

/// The parts whose variant sets differ between the classes in `absent` and in `present`
/// (`table[class][part]` = variant). Empty when either side serves no class.
pub fn separating_parts(table: &[Vec<usize>], absent: &[bool], present: &[bool]) -> PartSet {
    let num_parts = table.first().map(Vec::len).unwrap_or(0);
    let variants = |side: &[bool], p: usize| -> Vec<usize> {
        let mut v: Vec<usize> = table
            .iter()
            .zip(side)
            .filter(|(_, on)| **on)
            .filter_map(|(row, _)| row.get(p).copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut out = PartSet::EMPTY;
    if !absent.iter().any(|x| *x) || !present.iter().any(|x| *x) {
        return out;
    }
    for p in 0..num_parts {
        if variants(absent, p) != variants(present, p) {
            out.insert(p);
        }
    }
    out
}

/// The share of decision nodes whose prototype sits on a separating part: each entry is
/// (the part the prototype sits on, if any; the node's separating parts). 0 for no nodes.
pub fn discriminative_share(nodes: &[(Option<usize>, PartSet)]) -> f64 {
    if nodes.is_empty() {
        return 0.0;
    }
    let hits = nodes
        .iter()
        .filter(|(part, sep)| part.is_some_and(|p| sep.contains(p)))
        .count();
    hits as f64 / nodes.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use prototree_data::SynthConfig;

    #[test]
    fn hand_built_tree_and_variant_table() {
        // Depth 2: root (heap 0) splits {0, 1} (absent, heap 1) from {2, 3} (present, heap 2);
        // heap 1 splits class 0 | 1, heap 2 splits class 2 | 3.
        let topo = Topology::complete(2).unwrap();
        let below = classes_below(&topo, &[0, 1, 2, 3], 4);
        assert_eq!(below[0], vec![true; 4]);
        assert_eq!(below[1], vec![true, true, false, false]);
        assert_eq!(below[6], vec![false, false, false, true]);
        // Parts: 0 crest, 1 beak, 2 tail. Classes 0, 1 have crest 0; 2, 3 crest 1.
        // Beak: 0 → 0, 1 → 1, 2 → 0, 3 → 1 (same sets {0, 1} on both root sides).
        // Tail: 0 → 2, 1 → 2, 2 → 2, 3 → 0.
        let table = vec![vec![0, 0, 2], vec![0, 1, 2], vec![1, 0, 2], vec![1, 1, 0]];
        let root = separating_parts(&table, &below[1], &below[2]);
        assert_eq!(root, PartSet::from_parts(&[0, 2]));
        let left = separating_parts(&table, &below[3], &below[4]);
        assert_eq!(left, PartSet::from_parts(&[1]));
        let right = separating_parts(&table, &below[5], &below[6]);
        assert_eq!(right, PartSet::from_parts(&[1, 2]));
        // Root on the crest (separates), left node on the tail (does not), right node on
        // the background: 1 of 3.
        let nodes = [(Some(0), root), (Some(2), left), (None, right)];
        assert!((discriminative_share(&nodes) - 1.0 / 3.0).abs() < 1e-12);
        // Beak at the root does not separate.
        assert_eq!(discriminative_share(&[(Some(1), root)]), 0.0);
        assert_eq!(discriminative_share(&[]), 0.0);
        // One empty side: nothing separates.
        assert!(separating_parts(&table, &[false; 4], &below[2]).is_empty());
    }

    #[test]
    fn variant_table_follows_part_names() {
        let truth = SynthTruth {
            config: SynthConfig::default(),
            parts: vec!["crest".into(), "beak".into()],
            variants: vec![vec![], vec![]],
            classes: vec![("a".into(), vec![0, 2]), ("b".into(), vec![1, 0])],
            mask_labels: vec![],
        };
        // Data set order beak, crest.
        let t = variant_table(&truth, &["beak".into(), "Crest".into()], 2).unwrap();
        assert_eq!(t, vec![vec![2, 0], vec![0, 1]]);
        assert!(variant_table(&truth, &["wing".into()], 2).is_none());
        assert!(variant_table(&truth, &["beak".into()], 3).is_none());
    }
}

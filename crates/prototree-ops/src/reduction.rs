//! The order of the fused CPU kernels' parallel reductions over a batch (weight gradients
//! of the convolutions).
//!
//! By default a reduction is split into one task per thread, each summing its images, and
//! the tasks' sums are added in task order: the fastest split, but its result depends on
//! the thread count (float addition is not associative), so runs on 1 and 2 threads
//! differ in the last bits and, over a training run, in where they end. With
//! deterministic reductions ([`with_deterministic_reductions`], or
//! `PROTOTREE_DETERMINISTIC=1`) the split is a fixed number of tasks whatever the thread
//! count, so results are bit-identical on any number of threads. Reductions whose split
//! never depends on the thread count (the BatchNorm sums, fixed chunks; the matrix
//! products, which split outputs, not sums) need no switch.

use std::cell::Cell;

use crate::switch::Switch;

/// The environment variable that makes every reduction deterministic (`1`, `true`, `yes`).
pub const DETERMINISTIC_ENV: &str = "PROTOTREE_DETERMINISTIC";

/// Tasks of a deterministic reduction (at most one per item).
pub const DETERMINISTIC_TASKS: usize = 8;

thread_local! {
    static DETERMINISTIC_HERE: Cell<bool> = const { Cell::new(false) };
}

static DETERMINISTIC: Switch = Switch::new(DETERMINISTIC_ENV, &DETERMINISTIC_HERE);

/// Whether reductions started from this thread are deterministic: set by
/// [`DETERMINISTIC_ENV`] or inside [`with_deterministic_reductions`].
pub fn deterministic_reductions() -> bool {
    DETERMINISTIC.is_on()
}

/// Runs `f` with every reduction started from this thread split independently of the
/// thread count (nested calls keep it on; the previous setting is restored afterwards,
/// also on a panic). Training on this thread then gives the same bits on any number of
/// threads.
pub fn with_deterministic_reductions<R>(f: impl FnOnce() -> R) -> R {
    DETERMINISTIC.scoped(f)
}

/// How many tasks a reduction over `items` images is split into.
pub(crate) fn reduction_tasks(items: usize) -> usize {
    let tasks = if deterministic_reductions() {
        DETERMINISTIC_TASKS
    } else {
        rayon::current_num_threads()
    };
    tasks.clamp(1, items.max(1))
}

/// The element-wise sum of `parts`, added in their order (`len` elements; empty parts are
/// skipped).
pub(crate) fn sum_in_order<T: Copy + Default + std::ops::AddAssign>(
    parts: &[Vec<T>],
    len: usize,
) -> Vec<T> {
    let mut total = vec![T::default(); len];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += *p;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_tasks_ignore_the_thread_count() -> anyhow::Result<()> {
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build();
        let tasks = |n: usize, det: bool| -> anyhow::Result<usize> {
            Ok(pool(n)?.install(|| {
                if det {
                    with_deterministic_reductions(|| reduction_tasks(64))
                } else {
                    reduction_tasks(64)
                }
            }))
        };
        if !DETERMINISTIC.on_by_env() {
            assert_eq!(tasks(1, false)?, 1);
            assert_eq!(tasks(3, false)?, 3);
        }
        assert_eq!(tasks(1, true)?, DETERMINISTIC_TASKS);
        assert_eq!(tasks(3, true)?, DETERMINISTIC_TASKS);
        assert_eq!(with_deterministic_reductions(|| reduction_tasks(3)), 3);
        assert!(!DETERMINISTIC_HERE.with(Cell::get));
        assert_eq!(
            sum_in_order(&[vec![1.0f32, 2.0], vec![], vec![0.5, 0.5]], 2),
            [1.5, 2.5]
        );
        Ok(())
    }
}

//! Running one job per item on a bounded number of threads, results in the
//! items' order. `std::thread` only: a pull is blocking I/O, and a handful of
//! threads is all a few plugins need.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// `f` applied to each item, on at most `jobs` threads (at least one; never
/// more than there are items), the results in the items' order. Each thread
/// takes the next item not yet started, so a slow item holds up only its own
/// thread.
pub(crate) fn map_bounded<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = jobs.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let result = f(item);
            if let Some(slot) = slots.get(i) {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            }
        }
    };
    thread::scope(|scope| {
        // The calling thread is one of the workers. A thread that cannot be
        // started (a process limit reached on a busy build machine) is one
        // worker fewer, not a panic: the calling thread alone gets through
        // every item if need be.
        for _ in 1..threads {
            let _ = thread::Builder::new()
                .name("forge-oci-pull".to_owned())
                .spawn_scoped(scope, work);
        }
        work();
    });
    // Every index below `items.len()` was taken by exactly one thread, which
    // filled its slot, unless `f` panicked (then the scope re-raised it above).
    slots
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_in_order_on_at_most_jobs_threads() {
        let items: Vec<u64> = (0..40).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = map_bounded(&items, 3, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Later items finish first, so order comes from the slots, not from timing.
            thread::sleep(std::time::Duration::from_millis(40 - i));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(map_bounded(&[] as &[u8], 4, |_| ()).is_empty());
        assert_eq!(map_bounded(&[1, 2], 0, |x| x + 1), [2, 3]);
    }
}

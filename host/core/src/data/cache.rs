//! The loaders' volume cache: prepared subjects shared by all loader threads, loaded on
//! first use and evicted least-recently-used beyond a byte budget, so memory is bounded
//! by the budget (plus the volumes in use), not by the size of the dataset.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use super::DataError;

/// What the cache holds: anything that knows its size.
pub trait CacheSize {
    /// Bytes held in memory.
    fn bytes(&self) -> usize;
}

type Slot<T> = Arc<OnceLock<Result<Arc<T>, String>>>;

struct State<T> {
    slots: HashMap<usize, Slot<T>>,
    /// Loaded keys, least recently used first.
    order: VecDeque<usize>,
    bytes: usize,
}

/// A cache of `T` keyed by subject index, loading with `load`.
pub struct VolumeCache<T> {
    load: Box<dyn Fn(usize) -> Result<T, DataError> + Send + Sync>,
    budget: usize,
    state: Mutex<State<T>>,
}

impl<T: CacheSize + Send + Sync> VolumeCache<T> {
    /// A cache of at most `budget` bytes (one entry is always kept, however large).
    pub fn new(budget: usize, load: impl Fn(usize) -> Result<T, DataError> + Send + Sync + 'static) -> Self {
        VolumeCache {
            load: Box::new(load),
            budget,
            state: Mutex::new(State { slots: HashMap::new(), order: VecDeque::new(), bytes: 0 }),
        }
    }

    /// The entry for `key`, loading it if needed. Threads asking for the same key while
    /// it loads wait for that one load.
    ///
    /// # Errors
    /// The load error (as text: it is shared by every thread that asked).
    pub fn get(&self, key: usize) -> Result<Arc<T>, DataError> {
        let slot = {
            let mut state = self.state.lock().expect("cache lock");
            if let Some(pos) = state.order.iter().position(|&k| k == key) {
                state.order.remove(pos);
                state.order.push_back(key);
            }
            Arc::clone(state.slots.entry(key).or_default())
        };
        let mut loaded_now = false;
        let result = slot.get_or_init(|| {
            loaded_now = true;
            (self.load)(key).map(Arc::new).map_err(|e| e.to_string())
        });
        let value = result.clone().map_err(|e| DataError::Invalid(vec![e]))?;
        if loaded_now {
            let mut state = self.state.lock().expect("cache lock");
            state.bytes += value.bytes();
            state.order.push_back(key);
            while state.bytes > self.budget && state.order.len() > 1 {
                let Some(old) = state.order.pop_front() else { break };
                if let Some(evicted) = state.slots.remove(&old) {
                    if let Some(Ok(v)) = evicted.get() {
                        state.bytes -= v.bytes();
                    }
                }
            }
        }
        Ok(value)
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> usize {
        self.state.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Blob(usize);
    impl CacheSize for Blob {
        fn bytes(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn stays_within_budget_and_reloads_evicted_entries() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&loads);
        let cache = VolumeCache::new(250, move |k| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Blob(100 + k))
        });
        for k in [0, 1, 0, 2, 0] {
            assert_eq!(cache.get(k).unwrap().0, 100 + k);
            assert!(cache.bytes() <= 250, "{} bytes cached", cache.bytes());
        }
        // 0 and 1 fit; 2 evicts the least recently used (1); 0 stays cached throughout.
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        cache.get(1).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 4, "1 was evicted and is loaded again");
    }

    #[test]
    fn concurrent_requests_load_once() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&loads);
        let cache = Arc::new(VolumeCache::new(1 << 20, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(Blob(1))
        }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&cache);
                std::thread::spawn(move || c.get(7).map(|b| b.0))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap(), 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}

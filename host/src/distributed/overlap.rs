//! The gradient all-reduce overlapped with the backward pass: an autograd hook on every
//! trainable parameter of the (single) replica reports its gradient as soon as backward
//! has computed it, and a bucket starts its all-reduce the moment its last gradient is
//! in, while backward goes on with the earlier layers. What backward never reached is
//! sent as zeros once it returns; then the sums replace the gradients.
//!
//! Used when a process has one replica, as DDP does; with several local replicas their
//! gradients are summed first and [`super::buckets::Buckets::all_reduce_mean`] follows.
//!
//! The hooks are registered through a small C++ shim (`grad_hooks.cpp`). Each hook owns a
//! reference to the state it reports into, so that state lives as long as any hook can
//! call it; dropping the [`Overlap`] removes its hooks.

use std::ffi::{c_int, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use tch::Tensor;

use super::buckets::{flatten, write_means, Buckets};
use super::{CommError, Communicator};

extern "C" {
    fn nh_register_grad_hook(
        param: *mut torch_sys::C_tensor,
        ready: extern "C" fn(*mut c_void, usize, *mut torch_sys::C_tensor),
        context: *mut c_void,
        release: extern "C" fn(*mut c_void),
        index: usize,
        position: *mut c_uint,
    ) -> c_int;
    fn nh_remove_grad_hook(param: *mut torch_sys::C_tensor, position: c_uint) -> c_int;
}

/// One step's state, shared with the hooks.
struct Step {
    groups: Vec<Vec<usize>>,
    /// Parameter index → (bucket, position in it).
    place: Vec<Option<(usize, usize)>>,
    numels: Vec<Vec<i64>>,
    grads: Vec<Vec<Option<Tensor>>>,
    missing: Vec<usize>,
    flats: Vec<Option<Tensor>>,
    /// The communicator, while a backward pass runs (see [`CommLease`]).
    comm: Option<*mut dyn Communicator>,
    error: Option<CommError>,
}

// SAFETY: the raw communicator pointer is only set, and only dereferenced, while the
// thread that owns the communicator is blocked in `Overlap::backward` (a `CommLease`),
// and always under the mutex.
unsafe impl Send for Step {}

impl Step {
    /// The state of `buckets` over `params`, ready for a first pass.
    fn new(params: &[(String, Tensor)], buckets: &Buckets) -> Step {
        let groups = buckets.groups().to_vec();
        let mut place = vec![None; params.len()];
        for (b, g) in groups.iter().enumerate() {
            for (slot, &i) in g.iter().enumerate() {
                place[i] = Some((b, slot));
            }
        }
        let numels = groups.iter().map(|g| g.iter().map(|&i| params[i].1.numel() as i64).collect()).collect();
        let mut step = Step {
            grads: Vec::new(),
            groups,
            place,
            numels,
            missing: Vec::new(),
            flats: Vec::new(),
            comm: None,
            error: None,
        };
        step.reset();
        step
    }

    /// Clears what the last pass left, for the next one.
    fn reset(&mut self) {
        self.grads = self.groups.iter().map(|g| g.iter().map(|_| None).collect()).collect();
        self.missing = self.groups.iter().map(Vec::len).collect();
        self.flats = self.groups.iter().map(|_| None).collect();
        self.error = None;
    }

    /// Flattens bucket `b` (zeros for gradients that never came) and starts its sum.
    fn start(&mut self, b: usize, comm: &mut dyn Communicator) -> Result<(), CommError> {
        let grads = self.grads[b].iter_mut().map(Option::take).zip(self.numels[b].iter().copied());
        let flat = flatten(grads, comm.device());
        comm.start_all_reduce(&flat)?;
        self.flats[b] = Some(flat);
        Ok(())
    }

    fn gradient_ready(&mut self, index: usize, grad: Tensor) {
        let (Some(comm), Some(Some((b, slot)))) = (self.comm, self.place.get(index).copied()) else { return };
        if self.error.is_some() || self.grads[b][slot].is_some() {
            return;
        }
        self.grads[b][slot] = Some(grad);
        self.missing[b] -= 1;
        if self.missing[b] == 0 {
            // SAFETY: see `unsafe impl Send for Step`.
            let comm = unsafe { &mut *comm };
            if let Err(e) = self.start(b, comm) {
                self.error = Some(e);
            }
        }
    }
}

/// The hooks and buckets of one replica's parameters. Dropping it removes the hooks.
pub struct Overlap {
    /// The state the hooks report into; every hook holds a reference of its own.
    step: Arc<Mutex<Step>>,
    /// Each hooked parameter (a shallow copy: the same tensor) and its hook's position.
    hooks: Vec<(Tensor, c_uint)>,
}

/// The hooks' entry point: `context` is a reference to the `Mutex<Step>` that the
/// calling hook owns (see [`Overlap::hook`]).
extern "C" fn gradient_ready(context: *mut c_void, index: usize, grad: *mut torch_sys::C_tensor) {
    // No panic may unwind into libtorch.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` came from `Arc::into_raw` and the hook calling us holds that
        // reference until it is destroyed; `grad` is a tensor libtorch owns for the
        // duration of the call, which this shallow copy retains.
        let (step, grad) = unsafe { (&*(context as *const Mutex<Step>), Tensor::clone_from_ptr(grad)) };
        if let Ok(mut step) = step.lock() {
            step.gradient_ready(index, grad);
        }
    }));
}

/// Gives back a hook's reference to its state, when libtorch destroys the hook.
extern "C" fn release(context: *mut c_void) {
    let _ = catch_unwind(|| {
        // SAFETY: `context` is the reference `Arc::into_raw` made for this hook, given
        // back exactly once, by the hook's destructor.
        drop(unsafe { Arc::from_raw(context as *const Mutex<Step>) });
    });
}

impl Drop for Overlap {
    /// Removes the hooks; their references to the state go with them.
    fn drop(&mut self) {
        for (param, position) in &mut self.hooks {
            // SAFETY: `param` is a live tensor and `position` the one its registration
            // returned; each hook is removed once.
            if unsafe { nh_remove_grad_hook(param.as_mut_ptr(), *position) } != 0 {
                tracing::warn!(position = *position, "libtorch refused to remove a gradient hook");
            }
        }
    }
}

impl Overlap {
    /// Hooks every trainable parameter of `params` into buckets of `buckets`. The hooks
    /// stay until the returned value drops; a registration that fails part-way removes
    /// the hooks it had registered.
    ///
    /// # Errors
    /// libtorch refusing a hook (a parameter that does not require gradients).
    pub fn hook(params: &mut [(String, Tensor)], buckets: &Buckets) -> Result<Overlap, CommError> {
        Overlap::hook_into(Arc::new(Mutex::new(Step::new(params, buckets))), params)
    }

    /// Registers the hooks of `step`'s buckets on `params`, one by one, into an
    /// `Overlap` that removes them when dropped, on the error path included.
    fn hook_into(step: Arc<Mutex<Step>>, params: &mut [(String, Tensor)]) -> Result<Overlap, CommError> {
        let hooked: Vec<usize> = step.lock().unwrap_or_else(PoisonError::into_inner).groups.concat();
        let mut overlap = Overlap { step, hooks: Vec::with_capacity(hooked.len()) };
        for i in hooked {
            let (name, p) = &mut params[i];
            let context = Arc::into_raw(Arc::clone(&overlap.step)) as *mut c_void;
            let mut position: c_uint = 0;
            // SAFETY: `p` is a live tensor and `position` a place to write to; the hook
            // takes over the reference `context` holds, and gives it back through
            // `release`, also when registering fails.
            let code =
                unsafe { nh_register_grad_hook(p.as_mut_ptr(), gradient_ready, context, release, i, &mut position) };
            if code != 0 {
                return Err(CommError::Backend {
                    backend: "overlap",
                    message: format!("libtorch refused a gradient hook on parameter `{name}`"),
                });
            }
            overlap.hooks.push((p.shallow_clone(), position));
        }
        Ok(overlap)
    }

    /// Runs `backward` (a forward and backward pass through the hooked parameters) with
    /// each bucket's sum starting as soon as its gradients are in. Follow it with
    /// [`Overlap::all_reduce_mean`].
    ///
    /// # Errors
    /// `backward`'s own error, or a collective that failed to start.
    pub fn backward<T, E: From<CommError>>(
        &self,
        comm: &mut dyn Communicator,
        backward: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let lease = CommLease::lend(&self.step, comm)?;
        let outcome = backward();
        lease.end();
        let value = outcome?;
        let mut step = self.step.lock().map_err(|_| poisoned())?;
        match step.error.take() {
            Some(e) => Err(e.into()),
            None => Ok(value),
        }
    }

    /// Starts the sums of the buckets backward did not complete (zeros for what it never
    /// reached), waits for every bucket, and replaces each gradient by its mean over the
    /// job's processes.
    ///
    /// # Errors
    /// A collective that failed or passed its deadline.
    pub fn all_reduce_mean(&self, params: &[(String, Tensor)], comm: &mut dyn Communicator) -> Result<(), CommError> {
        let mut step = self.step.lock().map_err(|_| poisoned())?;
        for b in 0..step.groups.len() {
            if step.flats[b].is_none() {
                step.start(b, comm)?;
            }
        }
        comm.finish()?;
        let flats: Vec<Tensor> = step.flats.iter_mut().map(|f| f.take().expect("every bucket started")).collect();
        write_means(&step.groups, &flats, params, comm.world().size);
        step.reset();
        Ok(())
    }
}

/// The communicator lent to the hooks for one backward pass: the pointer in
/// [`Step::comm`] is cleared when this drops, also when `backward` panics.
struct CommLease<'a> {
    step: &'a Mutex<Step>,
}

impl<'a> CommLease<'a> {
    /// Resets `step` for a new pass and lends it `comm`, until the lease ends.
    ///
    /// # Errors
    /// A hook panicked in an earlier pass.
    fn lend(step: &'a Mutex<Step>, comm: &'a mut dyn Communicator) -> Result<CommLease<'a>, CommError> {
        let mut state = step.lock().map_err(|_| poisoned())?;
        state.reset();
        let raw: *mut (dyn Communicator + 'a) = comm;
        // SAFETY: only the lifetime is erased, for storage; the lease, which borrows
        // `comm` for 'a, clears the pointer when it drops, and the hooks use it only
        // while it is set.
        state.comm = Some(unsafe { std::mem::transmute::<*mut (dyn Communicator + 'a), *mut dyn Communicator>(raw) });
        Ok(CommLease { step })
    }

    /// Takes the communicator back from the hooks.
    fn end(self) {}
}

impl Drop for CommLease<'_> {
    fn drop(&mut self) {
        self.step.lock().unwrap_or_else(PoisonError::into_inner).comm = None;
    }
}

fn poisoned() -> CommError {
    CommError::Backend { backend: "overlap", message: "a gradient hook panicked".into() }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use tch::{Device, Kind};

    use super::*;
    use crate::distributed::{Launcher, World};

    /// A communicator of a pretend job of two identical ranks: a sum doubles the values.
    /// It records how many sums were started.
    struct Twin {
        world: World,
        started: Rc<RefCell<Vec<i64>>>,
        pending: Vec<Tensor>,
    }

    impl Communicator for Twin {
        fn backend(&self) -> &'static str {
            "twin"
        }
        fn world(&self) -> &World {
            &self.world
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn start_all_reduce(&mut self, tensor: &Tensor) -> Result<(), CommError> {
            self.started.borrow_mut().push(tensor.numel() as i64);
            self.pending.push(tensor.shallow_clone());
            Ok(())
        }
        fn start_broadcast(&mut self, _: &Tensor, _: usize) -> Result<(), CommError> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), CommError> {
            for mut t in self.pending.drain(..) {
                let _ = t.g_mul_scalar_(2.0);
            }
            Ok(())
        }
        fn abort(&mut self, _: i32) {}
    }

    /// A trainable vector of `n` random values.
    fn leaf(n: i64) -> Tensor {
        Tensor::randn([n], (Kind::Float, Device::Cpu)).set_requires_grad(true)
    }

    /// A [`Twin`] and the sizes of the sums it starts.
    fn twin() -> (Twin, Rc<RefCell<Vec<i64>>>) {
        let started = Rc::new(RefCell::new(Vec::new()));
        let world = World { launcher: Launcher::OpenMpi, rank: 0, size: 2, local_rank: 0, master: None };
        (Twin { world, started: Rc::clone(&started), pending: Vec::new() }, started)
    }

    /// Backward of a loss that reaches every parameter of `params`.
    fn backward_through(params: &[(String, Tensor)]) {
        let losses: Vec<Tensor> = params.iter().map(|(_, p)| (p * 2.0).sum(Kind::Float)).collect();
        Tensor::stack(&losses, 0).sum(Kind::Float).backward();
    }

    #[test]
    fn buckets_start_during_backward_and_the_gradients_become_the_means() {
        let mut params = vec![("a".to_owned(), leaf(3)), ("b".to_owned(), leaf(5)), ("unused".to_owned(), leaf(2))];
        // One parameter per bucket: the last first.
        let buckets = Buckets::plan(&params, 1);
        let overlap = Overlap::hook(&mut params, &buckets).unwrap();
        let (mut twin, started) = twin();
        let (a, b) = (params[0].1.shallow_clone(), params[1].1.shallow_clone());
        let during = overlap
            .backward(&mut twin, || -> Result<Vec<i64>, CommError> {
                ((&a * 2.0).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
                Ok(started.borrow().clone())
            })
            .unwrap();
        // Both used parameters' buckets started inside backward; the unused one did not.
        let mut sizes = during.clone();
        sizes.sort();
        assert_eq!(sizes, vec![3, 5]);
        overlap.all_reduce_mean(&params, &mut twin).unwrap();
        assert_eq!(started.borrow().len(), 3, "the unused parameter's bucket is sent as zeros afterwards");
        // The mean over two identical ranks is each rank's own gradient.
        let close = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]) < 1e-6;
        assert!(close(&params[0].1.grad(), &Tensor::full([3], 2.0, (Kind::Float, Device::Cpu))));
        assert!(close(&params[1].1.grad(), &(&b * 2.0).detach()));
        // A second step starts afresh.
        for (_, p) in &mut params {
            p.zero_grad();
        }
        started.borrow_mut().clear();
        overlap
            .backward(&mut twin, || -> Result<(), CommError> {
                (&a * 3.0).sum(Kind::Float).backward();
                Ok(())
            })
            .unwrap();
        overlap.all_reduce_mean(&params, &mut twin).unwrap();
        assert!(close(&params[0].1.grad(), &Tensor::full([3], 3.0, (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn dropping_the_overlap_removes_its_hooks() {
        let mut params = vec![("a".to_owned(), leaf(3)), ("b".to_owned(), leaf(5))];
        let buckets = Buckets::plan(&params, 1);
        let state = Arc::new(Mutex::new(Step::new(&params, &buckets)));
        let overlap = Overlap::hook_into(Arc::clone(&state), &mut params).unwrap();
        assert_eq!(Arc::strong_count(&state), 4, "this test's, the overlap's and one per hook");
        let (mut twin, started) = twin();
        let lease = CommLease::lend(&state, &mut twin).unwrap();
        backward_through(&params);
        lease.end();
        assert_eq!(started.borrow().len(), 2, "hooked: both buckets start during backward");

        drop(overlap);
        assert_eq!(Arc::strong_count(&state), 1, "every hook was destroyed, and its reference with it");
        started.borrow_mut().clear();
        let lease = CommLease::lend(&state, &mut twin).unwrap();
        backward_through(&params);
        lease.end();
        assert!(started.borrow().is_empty(), "no hook is left to start a bucket");
        assert!(params.iter().all(|(_, p)| p.grad().defined()), "backward itself still works");
    }

    #[test]
    fn a_registration_that_fails_part_way_removes_the_hooks_it_registered() {
        let mut params = vec![("a".to_owned(), leaf(3)), ("b".to_owned(), leaf(5)), ("c".to_owned(), leaf(2))];
        // Hooks are registered last parameter first: `c` and `b` succeed, then libtorch
        // refuses `a`, which stopped requiring gradients after the buckets were planned.
        let buckets = Buckets::plan(&params, 1);
        params[0].1 = params[0].1.detach();
        let state = Arc::new(Mutex::new(Step::new(&params, &buckets)));
        let error = Overlap::hook_into(Arc::clone(&state), &mut params).err().expect("`a` cannot be hooked");
        assert!(error.to_string().contains("parameter `a`"), "{error}");
        assert_eq!(Arc::strong_count(&state), 1, "the hooks on `c` and `b` were removed, the refused one released");
        let (mut twin, started) = twin();
        let lease = CommLease::lend(&state, &mut twin).unwrap();
        backward_through(&params[1..]);
        lease.end();
        assert!(started.borrow().is_empty(), "no hook is left to start a bucket");
    }
}

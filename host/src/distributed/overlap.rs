//! The gradient all-reduce overlapped with the backward pass: an autograd hook on every
//! trainable parameter of the (single) replica reports its gradient as soon as backward
//! has computed it, and a bucket starts its all-reduce the moment its last gradient is
//! in, while backward goes on with the earlier layers. What backward never reached is
//! sent as zeros once it returns; then the sums replace the gradients.
//!
//! Used when a process has one replica, as DDP does; with several local replicas their
//! gradients are summed first and [`super::buckets::Buckets::all_reduce_mean`] follows.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use tch::Tensor;

use super::buckets::{flatten, write_means, Buckets};
use super::{CommError, Communicator};

extern "C" {
    fn nh_register_grad_hook(
        param: *mut torch_sys::C_tensor,
        ready: extern "C" fn(*mut c_void, usize, *mut torch_sys::C_tensor),
        context: *mut c_void,
        index: usize,
    ) -> c_int;
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
    /// The communicator, while a backward pass runs (see [`Overlap::backward`]).
    comm: Option<*mut dyn Communicator>,
    error: Option<CommError>,
}

// SAFETY: the raw communicator pointer is only set, and only dereferenced, while the
// thread that owns the communicator is blocked in `Overlap::backward`.
unsafe impl Send for Step {}

impl Step {
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

/// The hooks and buckets of one replica's parameters.
pub struct Overlap {
    // Boxed: the hooks hold its address for the life of the parameters.
    step: Box<Mutex<Step>>,
}

extern "C" fn gradient_ready(context: *mut c_void, index: usize, grad: *mut torch_sys::C_tensor) {
    // No panic may unwind into libtorch.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is the `Mutex<Step>` of a live `Overlap`; `grad` is a tensor
        // libtorch owns for the duration of the call, which this shallow copy retains.
        let (step, grad) = unsafe { (&*(context as *const Mutex<Step>), Tensor::clone_from_ptr(grad)) };
        if let Ok(mut step) = step.lock() {
            step.gradient_ready(index, grad);
        }
    }));
}

impl Overlap {
    /// Hooks every trainable parameter of `params` into buckets of `buckets`.
    ///
    /// The returned value must outlive every backward pass through `params`: the hooks
    /// stay registered, and call into it, for as long as the parameters live.
    ///
    /// # Errors
    /// libtorch refusing a hook.
    pub fn hook(params: &mut [(String, Tensor)], buckets: &Buckets) -> Result<Overlap, CommError> {
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
        let step = Box::new(Mutex::new(step));
        let context = &*step as *const Mutex<Step> as *mut c_void;
        let hooked: Vec<usize> = step.lock().map(|s| s.groups.concat()).unwrap_or_default();
        for i in hooked {
            let (name, p) = &mut params[i];
            // SAFETY: `p` is a live tensor; `context` outlives the hooks (see above).
            let code = unsafe { nh_register_grad_hook(p.as_mut_ptr(), gradient_ready, context, i) };
            if code != 0 {
                return Err(CommError::Backend {
                    backend: "overlap",
                    message: format!("libtorch refused a gradient hook on parameter `{name}`"),
                });
            }
        }
        Ok(Overlap { step })
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
        {
            let mut step = self.step.lock().map_err(|_| poisoned())?;
            step.reset();
            let raw: *mut (dyn Communicator + '_) = comm;
            // SAFETY: only the lifetime is erased, for storage; the pointer is cleared
            // below, before `comm`'s borrow ends, and the hooks use it only while this
            // thread waits in `backward()`.
            step.comm =
                Some(unsafe { std::mem::transmute::<*mut (dyn Communicator + '_), *mut dyn Communicator>(raw) });
        }
        let outcome = backward();
        let mut step = self.step.lock().map_err(|_| poisoned())?;
        step.comm = None;
        let value = outcome?;
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

    #[test]
    fn buckets_start_during_backward_and_the_gradients_become_the_means() {
        let leaf = |n: i64| Tensor::randn([n], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut params = vec![("a".to_owned(), leaf(3)), ("b".to_owned(), leaf(5)), ("unused".to_owned(), leaf(2))];
        // One parameter per bucket: the last first.
        let buckets = Buckets::plan(&params, 1);
        let overlap = Overlap::hook(&mut params, &buckets).unwrap();
        let started = Rc::new(RefCell::new(Vec::new()));
        let world = World { launcher: Launcher::OpenMpi, rank: 0, size: 2, local_rank: 0, master: None };
        let mut twin = Twin { world, started: Rc::clone(&started), pending: Vec::new() };
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
}

//! Gradient buckets: the trainable parameters grouped, last layers first, into flat
//! buffers of about `system.bucket_mb`, so that a model's gradients cross the network in
//! a few large messages rather than hundreds of small ones, several in flight at once.

use tch::{Device, Kind, Tensor};

use super::{CommError, Communicator};

/// The grouping of a model's trainable parameters into buckets.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// Indices into the parameter list, per bucket.
    groups: Vec<Vec<usize>>,
}

impl Buckets {
    /// Groups the parameters that require gradients, from the last to the first (the
    /// order backward produces their gradients), closing a bucket once it holds
    /// `bucket_bytes` of `Float` values.
    pub fn plan(params: &[(String, Tensor)], bucket_bytes: usize) -> Buckets {
        let mut groups = vec![Vec::new()];
        let mut bytes = 0usize;
        for (i, (_, p)) in params.iter().enumerate().rev().filter(|(_, (_, p))| p.requires_grad()) {
            if bytes >= bucket_bytes.max(1) {
                groups.push(Vec::new());
                bytes = 0;
            }
            groups.last_mut().expect("one group at least").push(i);
            bytes += p.numel() * 4;
        }
        groups.retain(|g| !g.is_empty());
        Buckets { groups }
    }

    /// The parameter indices of each bucket.
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is nothing to reduce.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Replaces every gradient by its mean over the job's processes. A gradient that is
    /// undefined here (a parameter the loss did not reach) counts as zeros and stays
    /// undefined.
    ///
    /// # Errors
    /// A collective that failed or passed its deadline.
    pub fn all_reduce_mean(&self, params: &[(String, Tensor)], comm: &mut dyn Communicator) -> Result<(), CommError> {
        if comm.is_identity() {
            return Ok(());
        }
        let size = comm.world().size;
        let device = comm.device();
        let mut flats = Vec::with_capacity(self.groups.len());
        // Each bucket starts as soon as it is flattened, while the next is being gathered.
        for group in &self.groups {
            let grads = group.iter().map(|&i| {
                let (p, g) = (&params[i].1, params[i].1.grad());
                (g.defined().then_some(g), p.numel() as i64)
            });
            let flat = flatten(grads, device);
            comm.start_all_reduce(&flat)?;
            flats.push(flat);
        }
        comm.finish()?;
        write_means(&self.groups, &flats, params, size);
        Ok(())
    }
}

/// One flat `Float` buffer on `device` holding `grads` in order: each a gradient, or
/// `None` for zeros of the given length.
pub(super) fn flatten(grads: impl Iterator<Item = (Option<Tensor>, i64)>, device: Device) -> Tensor {
    let parts: Vec<Tensor> = grads
        .map(|(g, n)| match g {
            Some(g) => g.to_device(device).to_kind(Kind::Float).reshape([-1]),
            None => Tensor::zeros([n], (Kind::Float, device)),
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Writes each bucket's sum over `processes`, divided by their number, into the
/// gradients of its parameters (those that have one).
pub(super) fn write_means(groups: &[Vec<usize>], sums: &[Tensor], params: &[(String, Tensor)], processes: usize) {
    let scale = 1.0 / processes as f64;
    tch::no_grad(|| {
        for (group, sum) in groups.iter().zip(sums) {
            let mut offset = 0i64;
            for &i in group {
                let p = &params[i].1;
                let n = p.numel() as i64;
                let mut g = p.grad();
                if g.defined() {
                    g.copy_(&(sum.narrow(0, offset, n).view_(p.size()) * scale));
                }
                offset += n;
            }
        }
    });
}

/// Copies rank `root`'s values of `tensors` (parameters and buffers) into every other
/// process's, through the communicator's device.
///
/// # Errors
/// A collective that failed or passed its deadline.
pub fn broadcast(tensors: &mut [&mut Tensor], root: usize, comm: &mut dyn Communicator) -> Result<(), CommError> {
    if comm.is_identity() {
        return Ok(());
    }
    let device = comm.device();
    let staged: Vec<Tensor> = tensors
        .iter()
        .map(|t| {
            let kind = if t.kind() == Kind::Double { Kind::Double } else { Kind::Float };
            t.to_device(device).to_kind(kind).contiguous()
        })
        .collect();
    for s in &staged {
        comm.start_broadcast(s, root)?;
    }
    comm.finish()?;
    tch::no_grad(|| {
        for (t, s) in tensors.iter_mut().zip(&staged) {
            t.copy_(&s.to_device(t.device()).to_kind(t.kind()));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(n: i64) -> (String, Tensor) {
        (format!("p{n}"), Tensor::zeros([n], (Kind::Float, Device::Cpu)).set_requires_grad(true))
    }

    #[test]
    fn buckets_take_parameters_last_first_and_close_past_the_size() {
        let mut params = vec![param(10), param(20), param(30), param(40)];
        params.push(("frozen".into(), Tensor::zeros([5], (Kind::Float, Device::Cpu))));
        // 160, 120, 80 and 40 bytes, last first: a 100-byte bucket closes after each of
        // the two large ones, then holds the two small ones together.
        let b = Buckets::plan(&params, 100);
        assert_eq!(b.groups, vec![vec![3], vec![2], vec![1, 0]]);
        let b = Buckets::plan(&params, 250);
        assert_eq!(b.groups, vec![vec![3, 2], vec![1, 0]]);
        let b = Buckets::plan(&params, usize::MAX);
        assert_eq!(b.groups, vec![vec![3, 2, 1, 0]]);
        assert_eq!(b.len(), 1);
    }
}

//! Optimisers over the host's parameter list: Adam and SGD with momentum, with L2
//! weight decay. Updates are in place, so the plugin's tensors change with them.

use tch::Tensor;

/// An optimiser and its per-parameter state.
pub enum Optimiser {
    /// Adam (Kingma & Ba 2015) with β = (0.9, 0.999), ε = 1e-8.
    Adam {
        /// First moments.
        m: Vec<Tensor>,
        /// Second moments.
        v: Vec<Tensor>,
        /// Steps taken.
        t: i32,
    },
    /// SGD with (heavy-ball) momentum.
    Sgd {
        /// Momentum coefficient.
        momentum: f64,
        /// Velocity buffers.
        velocity: Vec<Tensor>,
    },
}

impl Optimiser {
    /// A fresh optimiser (`adam` or `sgd`) for `params`.
    pub fn new(kind: &str, momentum: f64, params: &[(String, Tensor)]) -> Optimiser {
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect::<Vec<_>>();
        match kind {
            "sgd" => Optimiser::Sgd { momentum, velocity: zeros() },
            _ => Optimiser::Adam { m: zeros(), v: zeros(), t: 0 },
        }
    }

    /// One update from the gradients held by `params`, then clears the gradients.
    pub fn step(&mut self, params: &mut [(String, Tensor)], lr: f64, weight_decay: f64) {
        tch::no_grad(|| match self {
            Optimiser::Adam { m, v, t } => {
                *t += 1;
                let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
                let (c1, c2) = (1.0 - b1.powi(*t), 1.0 - b2.powi(*t));
                for (i, (_, p)) in params.iter_mut().enumerate() {
                    let Some(g) = grad(p, weight_decay) else { continue };
                    let _ = m[i].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                    let _ = v[i].g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                    let update = (&m[i] / c1) / ((&v[i] / c2).sqrt() + eps) * lr;
                    let _ = p.g_sub_(&update);
                }
            }
            Optimiser::Sgd { momentum, velocity } => {
                for (i, (_, p)) in params.iter_mut().enumerate() {
                    let Some(g) = grad(p, weight_decay) else { continue };
                    let _ = velocity[i].g_mul_scalar_(*momentum).g_add_(&g);
                    let _ = p.g_sub_(&(&velocity[i] * lr));
                }
            }
        });
        for (_, p) in params.iter_mut() {
            p.zero_grad();
        }
    }
}

fn grad(p: &Tensor, weight_decay: f64) -> Option<Tensor> {
    let g = p.grad();
    if !g.defined() {
        return None;
    }
    Some(if weight_decay > 0.0 { g + p * weight_decay } else { g })
}

//! Optimisers and learning-rate schedules over the host's parameter list. Updates are
//! in place (the plugin's tensors change with them), and every optimiser's state can be
//! saved and restored, so a resumed run continues exactly.

use std::collections::HashMap;
use std::f64::consts::PI;

use tch::{Kind, Tensor};

use crate::config::{LrSchedule, OptimiserRule, Training, WeightDecayNorm};

/// State tensors kept per parameter by `rule`.
fn slots(rule: OptimiserRule) -> &'static [&'static str] {
    match rule {
        OptimiserRule::Sgd => &[],
        OptimiserRule::Momentum | OptimiserRule::Nesterov => &["velocity"],
        OptimiserRule::Adam | OptimiserRule::AdamW => &["m", "v"],
        OptimiserRule::Adagrad | OptimiserRule::RmsProp => &["square_avg"],
    }
}

/// An optimiser's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimiserConfig {
    /// The rule.
    pub rule: OptimiserRule,
    /// Momentum coefficient μ (momentum, nesterov).
    pub momentum: f64,
    /// Weight decay (L2, decoupled for adamw).
    pub weight_decay: f64,
    /// The penalty weight decay weighs: L2 adds `decay · w` to the gradient, L1
    /// `decay · sign(w)`.
    pub weight_decay_norm: WeightDecayNorm,
    /// Largest global gradient norm (0: no clipping).
    pub clip_grad_norm: f64,
}

impl OptimiserConfig {
    /// The optimiser `[training]` describes.
    pub fn from_training(t: &Training) -> OptimiserConfig {
        OptimiserConfig {
            rule: t.optimiser,
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            weight_decay_norm: t.weight_decay_norm,
            clip_grad_norm: t.clip_grad_norm,
        }
    }
}

/// An optimiser and its per-parameter state.
pub struct Optimiser {
    config: OptimiserConfig,
    /// `slots[s][p]`: state slot `s` of parameter `p`.
    slots: Vec<Vec<Tensor>>,
    steps: i64,
}

const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const RMS_RHO: f64 = 0.99;

impl Optimiser {
    /// A fresh optimiser for `params`.
    pub fn new(config: OptimiserConfig, params: &[(String, Tensor)]) -> Optimiser {
        let slots = slots(config.rule).iter().map(|_| params.iter().map(|(_, p)| p.zeros_like()).collect()).collect();
        Optimiser { config, slots, steps: 0 }
    }

    /// One update with learning rate `lr` from the gradients `params` hold, then clears
    /// them. Returns the global gradient norm before clipping.
    pub fn step(&mut self, params: &mut [(String, Tensor)], lr: f64) -> f64 {
        self.steps += 1;
        let c = self.config;
        tch::no_grad(|| {
            let grads: Vec<Option<Tensor>> =
                params.iter().map(|(_, p)| Some(p.grad()).filter(Tensor::defined)).collect();
            let norm =
                grads.iter().flatten().map(|g| g.square().sum(Kind::Double).double_value(&[])).sum::<f64>().sqrt();
            let scale =
                if c.clip_grad_norm > 0.0 && norm > c.clip_grad_norm { c.clip_grad_norm / (norm + 1e-6) } else { 1.0 };
            let (b1, b2) = ADAM_BETAS;
            let t = self.steps as i32;
            for (i, ((_, p), g)) in params.iter_mut().zip(grads).enumerate() {
                let Some(g) = g else { continue };
                let mut g = if scale < 1.0 { g * scale } else { g };
                if c.weight_decay > 0.0 && c.rule != OptimiserRule::AdamW {
                    g += match c.weight_decay_norm {
                        WeightDecayNorm::L2 => &*p * c.weight_decay,
                        WeightDecayNorm::L1 => p.sign() * c.weight_decay,
                    };
                }
                let update = match c.rule {
                    OptimiserRule::Sgd => g,
                    OptimiserRule::Momentum | OptimiserRule::Nesterov => {
                        let v = &mut self.slots[0][i];
                        let _ = v.g_mul_scalar_(c.momentum).g_add_(&g);
                        if c.rule == OptimiserRule::Nesterov {
                            g + &*v * c.momentum
                        } else {
                            v.shallow_clone()
                        }
                    }
                    OptimiserRule::Adam | OptimiserRule::AdamW => {
                        if c.rule == OptimiserRule::AdamW && c.weight_decay > 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                        }
                        let _ = self.slots[0][i].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = self.slots[1][i].g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                        let m_hat = &self.slots[0][i] / (1.0 - b1.powi(t));
                        let v_hat = &self.slots[1][i] / (1.0 - b2.powi(t));
                        m_hat / (v_hat.sqrt() + 1e-8)
                    }
                    OptimiserRule::Adagrad => {
                        let s = &mut self.slots[0][i];
                        let _ = s.g_add_(&(&g * &g));
                        &g / (s.sqrt() + 1e-10)
                    }
                    OptimiserRule::RmsProp => {
                        let s = &mut self.slots[0][i];
                        let _ = s.g_mul_scalar_(RMS_RHO).g_add_(&(&g * &g * (1.0 - RMS_RHO)));
                        &g / (s.sqrt() + 1e-8)
                    }
                };
                let _ = p.g_sub_(&(update * lr));
            }
            for (_, p) in params.iter_mut() {
                p.zero_grad();
            }
            norm
        })
    }

    /// The state as named tensors (`step` and `<slot>/<parameter>`), for checkpoints.
    pub fn state(&self, params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_owned(), Tensor::from_slice(&[self.steps]))];
        for (slot, tensors) in slots(self.config.rule).iter().zip(&self.slots) {
            for ((name, _), t) in params.iter().zip(tensors) {
                out.push((format!("{slot}/{name}"), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores a state saved by [`Optimiser::state`] for the same rule and parameters.
    ///
    /// # Errors
    /// A missing tensor or one of another shape, named.
    pub fn load_state(
        &mut self,
        mut saved: HashMap<String, Tensor>,
        params: &[(String, Tensor)],
    ) -> Result<(), String> {
        let step = saved.remove("step").ok_or("has no `step`")?;
        self.steps = step.int64_value(&[0]);
        for (slot, tensors) in slots(self.config.rule).iter().zip(self.slots.iter_mut()) {
            for ((name, _), t) in params.iter().zip(tensors.iter_mut()) {
                let key = format!("{slot}/{name}");
                let src = saved.remove(&key).ok_or_else(|| format!("has no `{key}` (another optimiser?)"))?;
                if src.size() != t.size() {
                    return Err(format!("`{key}` is {:?}, the parameter is {:?}", src.size(), t.size()));
                }
                tch::no_grad(|| t.copy_(&src));
            }
        }
        Ok(())
    }
}

/// How the learning rate changes over iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Multiplied by `gamma` every `size` iterations.
    Step {
        /// Iterations between decays.
        size: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// `(1 − t/T)^power`.
    Poly {
        /// The exponent.
        power: f64,
    },
    /// `(1 + cos(π t/T)) / 2`.
    Cosine,
}

/// A learning-rate schedule: linear warm-up from 0, then a decay over `max_iter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The base learning rate.
    pub base: f64,
    /// Warm-up iterations.
    pub warmup: u64,
    /// Iterations of the whole run (T).
    pub max_iter: u64,
    /// The decay after warm-up.
    pub decay: Decay,
}

impl Schedule {
    /// The schedule `[training]` describes.
    pub fn from_training(t: &Training) -> Schedule {
        let decay = match t.lr_schedule {
            LrSchedule::Constant => Decay::Constant,
            LrSchedule::Step => Decay::Step { size: t.lr_step_size, gamma: t.lr_gamma },
            LrSchedule::Poly => Decay::Poly { power: t.lr_power },
            LrSchedule::Cosine => Decay::Cosine,
        };
        Schedule { base: t.lr, warmup: t.warmup_iters, max_iter: t.max_iter, decay }
    }

    /// The rate of the step taken at (0-based) iteration `t`.
    pub fn lr(&self, t: u64) -> f64 {
        if t < self.warmup {
            return self.base * (t + 1) as f64 / self.warmup as f64;
        }
        let progress = (t as f64 / self.max_iter.max(1) as f64).min(1.0);
        self.base
            * match self.decay {
                Decay::Constant => 1.0,
                Decay::Step { size, gamma } => gamma.powi((t / size.max(1)) as i32),
                Decay::Poly { power } => (1.0 - progress).powf(power),
                Decay::Cosine => 0.5 * (1.0 + (PI * progress).cos()),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn quadratic_descent(rule: OptimiserRule, lr: f64, steps: usize) -> f64 {
        // Minimise ½‖p − 3‖² from p = 0.
        let p = Tensor::zeros([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut params = vec![("p".to_owned(), p)];
        let mut opt = Optimiser::new(
            OptimiserConfig {
                rule,
                momentum: 0.9,
                weight_decay: 0.0,
                weight_decay_norm: WeightDecayNorm::L2,
                clip_grad_norm: 0.0,
            },
            &params,
        );
        for _ in 0..steps {
            let loss = (&params[0].1 - 3.0).square().sum(Kind::Float) * 0.5;
            loss.backward();
            opt.step(&mut params, lr);
        }
        (&params[0].1 - 3.0).abs().max().double_value(&[])
    }

    #[test]
    fn every_rule_descends_a_quadratic() {
        for (rule, lr) in [
            (OptimiserRule::Sgd, 0.1),
            (OptimiserRule::Momentum, 0.05),
            (OptimiserRule::Nesterov, 0.05),
            (OptimiserRule::Adam, 0.1),
            (OptimiserRule::AdamW, 0.1),
            (OptimiserRule::Adagrad, 1.0),
            (OptimiserRule::RmsProp, 0.05),
        ] {
            let error = quadratic_descent(rule, lr, 300);
            assert!(error < 0.05, "{rule:?} ends {error} from the minimum");
        }
    }

    #[test]
    fn sgd_and_momentum_follow_their_formulas() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut params = vec![("p".to_owned(), p)];
        let cfg = OptimiserConfig {
            rule: OptimiserRule::Momentum,
            momentum: 0.5,
            weight_decay: 0.0,
            weight_decay_norm: WeightDecayNorm::L2,
            clip_grad_norm: 0.0,
        };
        let mut opt = Optimiser::new(cfg, &params);
        for _ in 0..2 {
            (&params[0].1 * 2.0).sum(Kind::Float).backward(); // gradient 2
            opt.step(&mut params, 0.1);
        }
        // v1 = 2, p1 = 0.8; v2 = 0.5·2 + 2 = 3, p2 = 0.8 − 0.3 = 0.5
        assert!((params[0].1.double_value(&[0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn clipping_bounds_the_update_and_reports_the_norm() {
        let p = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut params = vec![("p".to_owned(), p)];
        let cfg = OptimiserConfig {
            rule: OptimiserRule::Sgd,
            momentum: 0.0,
            weight_decay: 0.0,
            weight_decay_norm: WeightDecayNorm::L2,
            clip_grad_norm: 1.0,
        };
        let mut opt = Optimiser::new(cfg, &params);
        (&params[0].1 * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        let norm = opt.step(&mut params, 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let moved = params[0].1.norm().double_value(&[]);
        assert!((moved - 1.0).abs() < 1e-5, "clipped to norm 1, moved {moved}");
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let run = |restore: bool| {
            let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
            let mut params = vec![("w".to_owned(), p)];
            let cfg = OptimiserConfig {
                rule: OptimiserRule::Adam,
                momentum: 0.0,
                weight_decay: 0.01,
                weight_decay_norm: WeightDecayNorm::L2,
                clip_grad_norm: 0.0,
            };
            let mut opt = Optimiser::new(cfg, &params);
            let step = |opt: &mut Optimiser, params: &mut Vec<(String, Tensor)>| {
                params[0].1.square().sum(Kind::Float).backward();
                opt.step(params, 0.1);
            };
            for _ in 0..3 {
                step(&mut opt, &mut params);
            }
            if restore {
                let saved: HashMap<String, Tensor> =
                    opt.state(&params).into_iter().map(|(n, t)| (n, t.copy())).collect();
                opt = Optimiser::new(cfg, &params);
                opt.load_state(saved, &params).unwrap();
            }
            for _ in 0..3 {
                step(&mut opt, &mut params);
            }
            Vec::<f32>::try_from(params[0].1.detach()).unwrap()
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn l1_weight_decay_moves_each_weight_by_decay_times_its_sign() {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.0]).set_requires_grad(true);
        let mut params = vec![("w".to_owned(), p)];
        let cfg = OptimiserConfig {
            rule: OptimiserRule::Sgd,
            momentum: 0.0,
            weight_decay: 0.5,
            weight_decay_norm: WeightDecayNorm::L1,
            clip_grad_norm: 0.0,
        };
        let mut opt = Optimiser::new(cfg, &params);
        // A loss with zero gradient: only the penalty moves the weights.
        (params[0].1.sum(Kind::Float) * 0.0).backward();
        opt.step(&mut params, 0.1);
        let got = Vec::<f32>::try_from(params[0].1.detach()).unwrap();
        assert_eq!(got, [1.0 - 0.05, -2.0 + 0.05, 0.0]);
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        let s = |decay| Schedule { base: 1.0, warmup: 4, max_iter: 100, decay };
        assert_eq!(s(Decay::Constant).lr(0), 0.25);
        assert_eq!(s(Decay::Constant).lr(3), 1.0);
        assert_eq!(s(Decay::Constant).lr(50), 1.0);
        assert!((s(Decay::Step { size: 10, gamma: 0.5 }).lr(25) - 0.25).abs() < 1e-12);
        assert!((s(Decay::Poly { power: 1.0 }).lr(75) - 0.25).abs() < 1e-12);
        assert!((s(Decay::Cosine).lr(50) - 0.5).abs() < 1e-12);
        assert!(s(Decay::Cosine).lr(99) < 0.01);
    }
}

//! Activation functions, PReLU with one learned slope per channel.

use tch::nn::{self, Init};
use tch::Tensor;

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// `max(x, 0)`.
    Relu,
    /// ReLU with a learned negative slope per channel (initially 0.25).
    PRelu,
    /// ReLU with negative slope 0.01.
    LeakyRelu,
    /// Exponential linear unit.
    Elu,
    /// Scaled exponential linear unit.
    Selu,
    /// Gaussian error linear unit.
    Gelu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// The logistic function.
    Sigmoid,
    /// The hyperbolic tangent.
    Tanh,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// The identity.
    None,
}

impl ActivationKind {
    /// The names [`ActivationKind::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &[
        "relu",
        "prelu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "relu6",
        "sigmoid",
        "tanh",
        "softplus",
        "softsign",
        "none",
    ];

    /// Parses a name of [`ActivationKind::NAMES`].
    ///
    /// # Errors
    /// An unknown name, listing the known ones.
    pub fn parse(name: &str) -> Result<ActivationKind, String> {
        Ok(match name {
            "relu" => ActivationKind::Relu,
            "prelu" => ActivationKind::PRelu,
            "leaky_relu" => ActivationKind::LeakyRelu,
            "elu" => ActivationKind::Elu,
            "selu" => ActivationKind::Selu,
            "gelu" => ActivationKind::Gelu,
            "relu6" => ActivationKind::Relu6,
            "sigmoid" => ActivationKind::Sigmoid,
            "tanh" => ActivationKind::Tanh,
            "softplus" => ActivationKind::Softplus,
            "softsign" => ActivationKind::Softsign,
            "none" => ActivationKind::None,
            _ => return Err(format!("unknown activation \"{name}\"; expected one of {:?}", Self::NAMES)),
        })
    }

    /// The activation for `channels` feature maps (PReLU's slopes live under `p`).
    pub fn init(self, p: &nn::Path, channels: i64) -> Activation {
        let slope = (self == ActivationKind::PRelu).then(|| p.var("weight", &[channels], Init::Const(0.25)));
        Activation { kind: self, slope }
    }
}

/// An activation function.
#[derive(Debug)]
pub struct Activation {
    kind: ActivationKind,
    slope: Option<Tensor>,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// `[N, C, ...]` → `[N, C, ...]`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match (self.kind, &self.slope) {
            (ActivationKind::Relu, _) => x.relu(),
            (ActivationKind::PRelu, Some(slope)) => x.prelu(slope),
            (ActivationKind::LeakyRelu, _) => x.leaky_relu(),
            (ActivationKind::Elu, _) => x.elu(),
            (ActivationKind::Selu, _) => x.selu(),
            (ActivationKind::Gelu, _) => x.gelu("none"),
            (ActivationKind::Relu6, _) => x.relu6(),
            (ActivationKind::Sigmoid, _) => x.sigmoid(),
            (ActivationKind::Tanh, _) => x.tanh(),
            (ActivationKind::Softplus, _) => x.softplus(),
            (ActivationKind::Softsign, _) => x / (x.abs() + 1.0),
            (ActivationKind::PRelu, None) | (ActivationKind::None, _) => x.shallow_clone(),
        }
    }

    /// Applies the activation to a tensor nobody else holds: ReLU in place (one pass
    /// over memory and no allocation) when `in_place`, otherwise as [`Activation::forward`].
    pub fn forward_owned(&self, mut x: Tensor, in_place: bool) -> Tensor {
        match self.kind {
            ActivationKind::Relu if in_place => {
                let _ = x.relu_();
                x
            }
            _ => self.forward(&x),
        }
    }
}

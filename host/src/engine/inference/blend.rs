//! How overlapping window outputs are blended: every window's kept region carries a
//! weight map, and each voxel gets the weighted mean of the windows that cover it.
//!
//! - `constant`: weight 1 everywhere, a plain mean (NiftyNet's behaviour).
//! - `gaussian`: a separable Gaussian centred on the kept region, `σ = 1/8` of its size
//!   per axis, scaled to 1 at the centre and floored at `1e-4`, so window centres (where
//!   a network sees the most context) dominate and seams fade.

use std::fmt;

use crate::config::Blending;

/// The weight map of a window's kept region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Blend {
    /// Every voxel weighs 1.
    Constant,
    /// A Gaussian of `σ = sigma_scale ·` size along each axis.
    Gaussian {
        /// σ as a fraction of the kept size.
        sigma_scale: f64,
    },
}

/// The smallest weight of the Gaussian map (keeps window edges from vanishing).
pub const GAUSSIAN_FLOOR: f32 = 1e-4;

impl Blend {
    /// The weights of a kept region of `size` `(i, j, k)`.
    ///
    /// # Shapes
    /// returns `[k, j, i]` in memory (`size[0] · size[1] · size[2]` values)
    pub fn weights(&self, size: [usize; 3]) -> Vec<f32> {
        let n = size[0] * size[1] * size[2];
        match *self {
            Blend::Constant => vec![1.0; n],
            Blend::Gaussian { sigma_scale } => {
                let axis = |len: usize| -> Vec<f64> {
                    let centre = (len as f64 - 1.0) / 2.0;
                    let sigma = (sigma_scale * len as f64).max(1e-6);
                    (0..len).map(|x| (-(x as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp()).collect()
                };
                let (gi, gj, gk) = (axis(size[0]), axis(size[1]), axis(size[2]));
                let peak = gi.iter().cloned().fold(0.0, f64::max)
                    * gj.iter().cloned().fold(0.0, f64::max)
                    * gk.iter().cloned().fold(0.0, f64::max);
                let mut out = Vec::with_capacity(n);
                for wk in &gk {
                    for wj in &gj {
                        for wi in &gi {
                            out.push(((wi * wj * wk / peak) as f32).max(GAUSSIAN_FLOOR));
                        }
                    }
                }
                out
            }
        }
    }
}

impl From<Blending> for Blend {
    /// `constant`, or `gaussian` with `σ = 1/8` of the kept size.
    fn from(blending: Blending) -> Blend {
        match blending {
            Blending::Constant => Blend::Constant,
            Blending::Gaussian => Blend::Gaussian { sigma_scale: 0.125 },
        }
    }
}

impl fmt::Display for Blend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blend::Constant => f.write_str("constant"),
            Blend::Gaussian { .. } => f.write_str("gaussian"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_peaks_at_the_centre_and_is_symmetric() {
        let w = Blend::from(Blending::Gaussian).weights([5, 3, 1]);
        assert_eq!(w.len(), 15);
        assert_eq!(w[5 + 2], 1.0, "centre of the middle row");
        assert_eq!(w[5], w[5 + 4]);
        assert!(w[5] < w[5 + 1] && w[5 + 1] < w[5 + 2]);
        assert!(w.iter().all(|&v| v >= GAUSSIAN_FLOOR));
        assert!("cosine".parse::<Blending>().is_err());
        assert!(Blend::Constant.weights([2, 2, 2]).iter().all(|&v| v == 1.0));
    }
}

//! The validated shape of a dynamic U-Net: per level a kernel size and a stride per axis,
//! and the feature maps per level; errors name the parameter.

use niftyhost_plugin_api::sdk::Params;
use niftyhost_plugin_api::PluginError;

/// Axis names in tensor order, for messages.
const AXES: [&str; 3] = ["D", "H", "W"];

/// Levels (resolution stages) of the network, from full resolution down.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Kernel size per level, `[kD, kH, kW]`, each odd.
    pub kernels: Vec<[i64; 3]>,
    /// Stride per level, `[sD, sH, sW]`; the first is `[1, 1, 1]`.
    pub strides: Vec<[i64; 3]>,
    /// Feature maps per level: `min(base · 2^level, max)`.
    pub channels: Vec<i64>,
}

fn error(key: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::new(format!("dynunet: parameter `{key}`: {message}"))
}

/// The rows of an `int_list_list` parameter as `[d, h, w]` triples of positive integers.
fn triples(params: &Params, key: &str) -> Result<Vec<[i64; 3]>, PluginError> {
    params
        .int_lists(key)?
        .iter()
        .enumerate()
        .map(|(level, row)| {
            let triple: [i64; 3] = row
                .as_slice()
                .try_into()
                .map_err(|_| error(key, format!("level {level} has {} entries, expected 3 ([D, H, W])", row.len())))?;
            match triple.iter().position(|&v| v < 1) {
                Some(axis) => Err(error(
                    key,
                    format!("level {level} has {} along {}, expected a positive size", triple[axis], AXES[axis]),
                )),
                None => Ok(triple),
            }
        })
        .collect()
}

impl Topology {
    /// Reads and checks `kernel_sizes`, `strides`, `base_channels` and `max_channels`.
    ///
    /// # Errors
    /// Fewer than two levels, lists of different lengths, entries that are not three
    /// positive integers, an even kernel, a first stride other than `[1, 1, 1]`, or
    /// non-positive channel counts; each names the parameter.
    pub fn from_params(params: &Params) -> Result<Topology, PluginError> {
        let kernels = triples(params, "kernel_sizes")?;
        let strides = triples(params, "strides")?;
        if kernels.len() < 2 {
            return Err(error("kernel_sizes", format!("{} level(s), a U-Net needs at least 2", kernels.len())));
        }
        if strides.len() != kernels.len() {
            return Err(error(
                "strides",
                format!(
                    "{} levels, but `kernel_sizes` has {}: give one stride per level",
                    strides.len(),
                    kernels.len()
                ),
            ));
        }
        for (level, kernel) in kernels.iter().enumerate() {
            if let Some(axis) = kernel.iter().position(|k| k % 2 == 0) {
                return Err(error(
                    "kernel_sizes",
                    format!("level {level} has kernel {} along {}, expected an odd size", kernel[axis], AXES[axis]),
                ));
            }
        }
        if strides[0] != [1, 1, 1] {
            return Err(error("strides", format!("the first level's stride must be [1, 1, 1], got {:?}", strides[0])));
        }
        let base = params.positive("base_channels")?;
        let max = params.positive("max_channels")?;
        let channels = (0..kernels.len()).map(|level| base.saturating_mul(1 << level.min(40)).min(max)).collect();
        Ok(Topology { kernels, strides, channels })
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.kernels.len()
    }

    /// The product of the strides per axis: what every input size must be divisible by.
    pub fn total_stride(&self) -> [i64; 3] {
        self.strides.iter().fold([1, 1, 1], |acc, s| [acc[0] * s[0], acc[1] * s[1], acc[2] * s[2]])
    }

    /// The spatial size of each level's maps for an input of spatial size `input`.
    ///
    /// # Shapes
    /// `[D, H, W]` → one `[D, H, W]` per level
    pub fn level_sizes(&self, input: [i64; 3]) -> Vec<[i64; 3]> {
        let mut size = input;
        self.strides
            .iter()
            .map(|s| {
                size = [size[0] / s[0], size[1] / s[1], size[2] / s[2]];
                size
            })
            .collect()
    }
}

//! The planned configuration as commented TOML: every derived value followed by the rule
//! that produced it. The text depends only on the plan, so the same data gives the same
//! bytes.

use std::fmt::Write as _;

use super::rules::{mm, Normalisation, Ruled, Topology};
use crate::config::InputSection;

/// Everything the planned config says.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the plan came from (a config file or a dataset folder), for the header.
    pub source: String,
    /// `[system]`: seed, devices, model folder.
    pub seed: u64,
    /// Devices.
    pub devices: Vec<String>,
    /// Model folder.
    pub model_dir: String,
    /// Input sections (image sections first, in order, then the label section).
    pub sections: Vec<(String, InputSection)>,
    /// The image sections.
    pub image: Vec<String>,
    /// The label section.
    pub label: String,
    /// Classes.
    pub num_classes: usize,
    /// Class names by value, when declared.
    pub class_names: Vec<String>,
    /// Axis codes.
    pub axcodes: Ruled<String>,
    /// Voxel size, mm `(i, j, k)`.
    pub pixdim: Ruled<[f64; 3]>,
    /// Normalisation per image section.
    pub normalisation: Vec<Ruled<Normalisation>>,
    /// Patch and levels.
    pub topology: Topology,
    /// Why this patch.
    pub patch_rule: String,
    /// Feature maps of the first level.
    pub base_width: Ruled<usize>,
    /// Windows per step.
    pub batch: Ruled<usize>,
    /// Training iterations.
    pub iterations: Ruled<u64>,
    /// INFER fraction.
    pub held_out: Ruled<f64>,
    /// What the forward/backward check found, for the batch comment.
    pub checked: String,
    /// Finest target spacing, for the blur's sigma in mm.
    pub finest_mm: f64,
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", "))
}

fn triple<T: std::fmt::Display>(v: &[T; 3]) -> String {
    format!("[{}, {}, {}]", v[0], v[1], v[2])
}

/// `(i, j, k)` triples per level as torch's `[D, H, W]` = `[k, j, i]`, the order of the
/// dynunet's parameters.
fn levels_dhw(v: &[[usize; 3]]) -> String {
    format!("[{}]", v.iter().map(|t| triple(&[t[2], t[1], t[0]])).collect::<Vec<_>>().join(", "))
}

/// The planned configuration's text.
pub fn render(p: &Plan) -> String {
    let mut o = String::new();
    let w = &mut o;
    let t = &p.topology;
    let levels = t.strides.len();
    let _ = writeln!(w, "# Planned by `niftyhost plan` from {} (fingerprint.json beside it holds the", p.source);
    let _ = writeln!(w, "# measurements). Every derived value says which rule produced it; the README's");
    let _ = writeln!(w, "# \"Planning a training\" section lists the rules and their sources. Run:");
    let _ = writeln!(w, "#   niftyhost train -c planned.toml && niftyhost inference -c planned.toml && niftyhost evaluation -c planned.toml");
    let _ = writeln!(w, "\n[system]");
    let _ = writeln!(w, "seed = {}", p.seed);
    let _ = writeln!(w, "devices = {}", list(&p.devices));
    let _ = writeln!(w, "model_dir = {}", toml_str(&p.model_dir));
    for (name, s) in &p.sections {
        let _ = writeln!(w, "\n[input.{name}]");
        let opt = |w: &mut String, key: &str, v: &str| {
            if !v.is_empty() {
                let _ = writeln!(w, "{key} = {}", toml_str(v));
            }
        };
        opt(w, "path_to_search", &s.path_to_search);
        opt(w, "inference_path_to_search", &s.inference_path_to_search);
        opt(w, "csv_file", &s.csv_file);
        if !s.filename_contains.is_empty() {
            let _ = writeln!(w, "filename_contains = {}", list(&s.filename_contains));
        }
        if !s.filename_not_contains.is_empty() {
            let _ = writeln!(w, "filename_not_contains = {}", list(&s.filename_not_contains));
        }
        opt(w, "filename_removefromid", &s.filename_removefromid);
        opt(w, "modality", &s.modality);
        let _ = writeln!(w, "axcodes = {}  # {}", toml_str(&p.axcodes.value), p.axcodes.rule);
        let _ = writeln!(w, "pixdim = {}  # {}", mm(&p.pixdim.value), p.pixdim.rule);
        if let Some(n) = p.image.iter().position(|i| i == name) {
            match &p.normalisation[n] {
                Ruled { value: Normalisation::Ct { clip, zscore }, rule } => {
                    let _ = writeln!(w, "intensity_clip = {}  # {rule}", mm(clip));
                    let _ = writeln!(w, "intensity_zscore = {}  # {rule}", mm(zscore));
                }
                Ruled { rule, .. } => {
                    let _ = writeln!(w, "# intensities: network.whitening  # {rule}");
                }
            }
        }
    }
    let _ = writeln!(w, "\n[segmentation]");
    let _ = writeln!(w, "image = {}", list(&p.image));
    let _ = writeln!(w, "label = {}", toml_str(&p.label));
    let names = if p.class_names.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            p.class_names.iter().enumerate().map(|(v, n)| format!("{v} {n}")).collect::<Vec<_>>().join(", ")
        )
    };
    let _ = writeln!(w, "num_classes = {}  # declared{names}", p.num_classes);
    let _ = writeln!(w, "\n[network]");
    let _ = writeln!(w, "name = \"dynunet\"  # rule: dynamic U-Net, configured per dataset (nnU-Net)");
    let _ = writeln!(w, "batch_size = {}  # {}; {}", p.batch.value, p.batch.rule, p.checked);
    let _ = writeln!(w, "spatial_window_size = {}  # {}", triple(&t.patch), p.patch_rule);
    let _ = writeln!(
        w,
        "whitening = true  # rule: per-image z-score of every channel without a fixed intensity_zscore (nnU-Net)"
    );
    let _ = writeln!(w, "normalise_foreground_only = false  # rule: statistics over the whole image (nnU-Net)");
    let _ = writeln!(w, "window_sampling = \"foreground\"  # rule: foreground oversampling (nnU-Net)");
    let _ = writeln!(
        w,
        "foreground_oversample = 0.33  # rule: a third of each batch centred on a labelled voxel (nnU-Net)"
    );
    let _ = writeln!(w, "\n[network.params]");
    let _ = writeln!(w, "# Levels in torch's [D, H, W] order = (k, j, i) of the window.");
    let _ = writeln!(
        w,
        "kernel_sizes = {}  # rule: 1 along an axis until its spacing comes within twice the finest, 3 from that level down (nnU-Net)",
        levels_dhw(&t.kernels)
    );
    let pools = t.poolings();
    let _ = writeln!(
        w,
        "strides = {}  # rule: pool an axis while its map stays >= 4 voxels and its spacing < 2× the finest ({} levels; poolings (i, j, k) = {}) (nnU-Net)",
        levels_dhw(&t.strides),
        levels,
        triple(&pools)
    );
    let _ = writeln!(w, "base_channels = {}  # {}", p.base_width.value, p.base_width.rule);
    let _ = writeln!(w, "max_channels = 320  # rule: feature maps capped at 320 (nnU-Net)");
    let _ = writeln!(w, "block = \"plain\"  # rule: two convolutions per level (nnU-Net's default U-Net)");
    let _ = writeln!(w, "norm = \"instance\"  # rule: instance normalisation (nnU-Net)");
    let _ = writeln!(w, "activation = \"leaky_relu\"  # rule: leaky ReLU (nnU-Net)");
    let _ = writeln!(
        w,
        "deep_supervision = {}  # rule: auxiliary outputs at every decoder level but the lowest, weights halving (nnU-Net)",
        levels.saturating_sub(2)
    );
    render_training(w, p);
    let _ = writeln!(w, "\n[inference]");
    let _ = writeln!(w, "spatial_window_size = {}  # rule: the training patch (nnU-Net)", triple(&t.patch));
    let _ = writeln!(w, "overlap = 0.5  # rule: windows half a window apart (nnU-Net)");
    let _ = writeln!(w, "batch_size = 2");
    let _ =
        writeln!(w, "blending = \"gaussian\"  # rule: Gaussian importance weights, sigma 1/8 of the window (nnU-Net)");
    let _ =
        writeln!(w, "tta_mirror_axes = [0, 1, 2]  # rule: mirroring test-time augmentation along every axis (nnU-Net)");
    let _ = writeln!(w, "\n[evaluation]");
    let _ = writeln!(w, "evaluation_units = [\"label\"]");
    o
}

/// `[training]`: loss, optimiser, schedule, split and augmentation.
fn render_training(w: &mut String, p: &Plan) {
    let _ = writeln!(w, "\n[training]");
    let _ = writeln!(w, "loss = \"dice_ce\"  # rule: Dice + cross-entropy (nnU-Net)");
    let _ = writeln!(w, "optimiser = \"nesterov\"  # rule: SGD with Nesterov momentum (nnU-Net)");
    let _ = writeln!(w, "momentum = 0.99  # rule: nnU-Net");
    let _ = writeln!(w, "lr = 0.01  # rule: initial learning rate 1e-2 (nnU-Net)");
    let _ = writeln!(w, "lr_schedule = \"poly\"  # rule: poly decay (1 - t/T)^0.9 (nnU-Net)");
    let _ = writeln!(w, "lr_power = 0.9");
    let _ = writeln!(w, "weight_decay = 3e-5  # rule: nnU-Net");
    let _ = writeln!(w, "max_iter = {}  # {}", p.iterations.value, p.iterations.rule);
    let every = (p.iterations.value / 10).max(50);
    let _ = writeln!(w, "save_every_n = {every}");
    let _ = writeln!(w, "max_checkpoints = 2");
    let _ = writeln!(w, "exclude_fraction_for_inference = {:?}  # {}", p.held_out.value, p.held_out.rule);
    let _ = writeln!(w, "# nnU-Net's augmentation, as far as the augment plugin offers it. Missing: simulated low");
    let _ =
        writeln!(w, "# resolution, gamma on the inverted image, multiplicative brightness. Elastic deformation off.");
    let anisotropic = p.topology.kernels[0].contains(&1);
    let rotation = if anisotropic {
        let axis = (0..3).find(|&a| p.topology.kernels[0][a] == 1).unwrap_or(2);
        let key = ["rotation_angle_x", "rotation_angle_y", "rotation_angle_z"][axis];
        format!(
            "rotation_angle = [], {key} = [-180.0, 180.0] }}  # rule: anisotropic: in-plane rotation only (nnU-Net)"
        )
    } else {
        "rotation_angle = [-30.0, 30.0] }  # rule: ±30° about each axis (nnU-Net)".to_owned()
    };
    let entries = [
        ("rotation", 0.2, format!("params = {{ {rotation}")),
        ("scaling", 0.2, "params = { scaling_percentage = [-30.0, 40.0], isotropic_scaling = true }  # rule: scale 0.7-1.4 (nnU-Net)".to_owned()),
        ("gaussian_noise", 0.1, "params = { std_range = [0.0, 0.3162] }  # rule: noise variance 0-0.1 (nnU-Net)".to_owned()),
        (
            "gaussian_blur",
            0.2,
            format!(
                "params = {{ sigma_range = [{:?}, {:?}] }}  # rule: sigma 0.5-1 voxel of the finest spacing (nnU-Net)",
                (p.finest_mm * 0.5 * 1e4).round() / 1e4,
                (p.finest_mm * 1e4).round() / 1e4
            ),
        ),
        ("contrast_brightness", 0.15, "params = { contrast_range = [0.75, 1.25], brightness_range = [0.0, 0.0] }  # rule: contrast 0.75-1.25 (nnU-Net)".to_owned()),
        ("gamma", 0.3, "params = { gamma_range = [0.7, 1.5] }  # rule: gamma 0.7-1.5 (nnU-Net)".to_owned()),
        ("flip", 1.0, "params = { random_flipping_axes = [0, 1, 2], flip_probability = 0.5 }  # rule: mirroring along every axis (nnU-Net)".to_owned()),
    ];
    for (name, probability, params) in entries {
        let _ = writeln!(w, "\n[[training.augmentation]]");
        let _ = writeln!(w, "name = \"{name}\"");
        let _ = writeln!(w, "probability = {probability:?}");
        let _ = writeln!(w, "{params}");
    }
}

//! NiftyNet 0.1's command line, which needed no config file:
//! `train --net_name N --train_image_dir D --train_label_dir D --image_size s ...` and
//! `inference --net_name N --eval_image_dir D --save_seg_dir D ...`. Each flag is a
//! shortcut for configuration keys (see [`NiftyNetArgs::overrides`]); every other key
//! still comes from the defaults, a `-c` file or `--set`, which wins.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::ConfigError;

/// The input section the image folder flags define.
pub const IMAGE_SECTION: &str = "image";
/// The input section `--train_label_dir` defines.
pub const LABEL_SECTION: &str = "label";

/// NiftyNet 0.1's flags.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "NiftyNet 0.1 command line (no config file needed)")]
pub struct NiftyNetArgs {
    /// Shortcut for `network.name`.
    #[arg(long = "net_name", value_name = "NAME")]
    pub net_name: Option<String>,
    /// Training images: input section `image` reads every NIfTI file of DIR (one subject
    /// per file; `segmentation.image = ["image"]`).
    #[arg(long = "train_image_dir", value_name = "DIR", conflicts_with = "eval_image_dir")]
    pub train_image_dir: Option<PathBuf>,
    /// Training labels: input section `label` reads DIR; a label file pairs with the image
    /// of the same file name (`T1/sub01.nii.gz` with `Label/sub01.nii.gz`).
    #[arg(long = "train_label_dir", value_name = "DIR")]
    pub train_label_dir: Option<PathBuf>,
    /// Images to segment: input section `image` reads every NIfTI file of DIR, without
    /// labels (subjects the split file does not hold are new, so all are segmented).
    #[arg(long = "eval_image_dir", value_name = "DIR")]
    pub eval_image_dir: Option<PathBuf>,
    /// Shortcut for `inference.output_dir`: where segmentations are written.
    #[arg(long = "save_seg_dir", value_name = "DIR")]
    pub save_seg_dir: Option<PathBuf>,
    /// Window edge in voxels: `network.spatial_window_size` and
    /// `inference.spatial_window_size` = [s, s, s].
    #[arg(long = "image_size", value_name = "S")]
    pub image_size: Option<usize>,
    /// The label window's edge: `network.label_size` = [s, s, s]. Smaller than
    /// `--image_size`, the loss sees only the centre of each window and inference keeps
    /// only it (NiftyNet's border, (image - label) / 2 per side, a whole number); with
    /// `--net_name deepmedic` or `unet_2d`, the network runs unpadded as in NiftyNet
    /// (`network.params.pad_input = false`, as for NiftyNet's INI files).
    #[arg(long = "label_size", value_name = "S")]
    pub label_size: Option<usize>,
    /// Shortcut for `segmentation.num_classes`.
    #[arg(long = "num_classes", value_name = "K")]
    pub num_classes: Option<usize>,
    /// GPUs to train on (`system.num_gpus`): n is `cuda:0` to `cuda:<n-1>`, 0 the CPU
    /// (`system.devices = ["cpu"]`).
    #[arg(long = "num_gpus", value_name = "N")]
    pub num_gpus: Option<usize>,
}

/// A path as a TOML string literal.
fn path_value(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// A list of strings as a TOML array literal.
fn strings_value<S: AsRef<str>>(items: &[S]) -> String {
    toml::Value::Array(items.iter().map(|s| toml::Value::String(s.as_ref().to_owned())).collect()).to_string()
}

impl NiftyNetArgs {
    /// The keys these flags set, as `(flag, key, TOML value)`, in flag order.
    ///
    /// # Errors
    /// `--label_size` without `--image_size` (a label window needs the image window it
    /// is the centre of).
    pub fn overrides(&self) -> Result<Vec<(String, String, String)>, ConfigError> {
        let mut out = Vec::new();
        let mut set = |flag: &str, key: String, value: String| out.push((format!("--{flag}"), key, value));
        if let Some(name) = &self.net_name {
            set("net_name", "network.name".into(), toml::Value::String(name.clone()).to_string());
        }
        for (flag, dir) in [("train_image_dir", &self.train_image_dir), ("eval_image_dir", &self.eval_image_dir)] {
            if let Some(dir) = dir {
                set(flag, format!("input.{IMAGE_SECTION}.path_to_search"), path_value(dir));
                set(flag, "segmentation.image".into(), strings_value(&[IMAGE_SECTION]));
            }
        }
        if self.eval_image_dir.is_some() && self.train_label_dir.is_none() {
            // Images only: no label section is needed to segment them.
            set("eval_image_dir", "segmentation.label".into(), "\"\"".into());
        }
        if let Some(dir) = &self.train_label_dir {
            set("train_label_dir", format!("input.{LABEL_SECTION}.path_to_search"), path_value(dir));
            set("train_label_dir", "segmentation.label".into(), toml::Value::String(LABEL_SECTION.into()).to_string());
        }
        if let Some(dir) = &self.save_seg_dir {
            set("save_seg_dir", "inference.output_dir".into(), path_value(dir));
        }
        if let (Some(l), None) = (self.label_size, self.image_size) {
            return Err(ConfigError::Invalid(format!(
                "`--label_size {l}` with no `--image_size`: give the image window the label window is the centre of"
            )));
        }
        if let Some(s) = self.image_size {
            let window = format!("[{s}, {s}, {s}]");
            set("image_size", "network.spatial_window_size".into(), window.clone());
            set("image_size", "inference.spatial_window_size".into(), window);
        }
        if let Some(l) = self.label_size {
            set("label_size", "network.label_size".into(), format!("[{l}, {l}, {l}]"));
        }
        if let (Some(name), Some(l), Some(s)) = (&self.net_name, self.label_size, self.image_size) {
            let cube = |e: usize| [i64::try_from(e).unwrap_or(i64::MAX); 3];
            if let Some((key, value)) = crate::config::niftynet::unpadded_key(name, &cube(l), &cube(s)) {
                set("label_size", key.into(), value.to_string());
            }
        }
        if let Some(k) = self.num_classes {
            set("num_classes", "segmentation.num_classes".into(), k.to_string());
        }
        if let Some(n) = self.num_gpus {
            set("num_gpus", "system.num_gpus".into(), n.to_string());
            if n == 0 {
                // NiftyNet's 0 is the CPU, whatever the config's devices.
                set("num_gpus", "system.devices".into(), strings_value(&["cpu"]));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_sets_its_keys_in_order() {
        let args = NiftyNetArgs {
            net_name: Some("toynet".into()),
            train_image_dir: Some("./T1".into()),
            train_label_dir: Some("./Label".into()),
            image_size: Some(42),
            label_size: Some(42),
            num_gpus: Some(2),
            ..NiftyNetArgs::default()
        };
        let keys: Vec<(String, String)> = args.overrides().unwrap().into_iter().map(|(_, k, v)| (k, v)).collect();
        let expected = [
            ("network.name", "\"toynet\""),
            ("input.image.path_to_search", "\"./T1\""),
            ("segmentation.image", "[\"image\"]"),
            ("input.label.path_to_search", "\"./Label\""),
            ("segmentation.label", "\"label\""),
            ("network.spatial_window_size", "[42, 42, 42]"),
            ("inference.spatial_window_size", "[42, 42, 42]"),
            ("network.label_size", "[42, 42, 42]"),
            ("system.num_gpus", "2"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(keys, expected);
        let cpu = NiftyNetArgs { num_gpus: Some(0), ..NiftyNetArgs::default() }.overrides().unwrap();
        let cpu: Vec<(&str, &str)> = cpu.iter().map(|(_, k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(cpu, [("system.num_gpus", "0"), ("system.devices", "[\"cpu\"]")]);
        assert!(NiftyNetArgs::default().overrides().unwrap().is_empty());
    }

    #[test]
    fn a_label_window_needs_an_image_window() {
        let args = NiftyNetArgs { image_size: Some(42), label_size: Some(36), ..NiftyNetArgs::default() };
        let keys = args.overrides().unwrap();
        assert!(keys.iter().any(|(f, k, v)| f == "--label_size" && k == "network.label_size" && v == "[36, 36, 36]"));
        let alone = NiftyNetArgs { label_size: Some(36), ..NiftyNetArgs::default() }.overrides().unwrap_err();
        assert!(alone.to_string().contains("with no `--image_size`"), "{alone}");
    }

    #[test]
    fn valid_convolution_networks_run_unpadded_with_a_smaller_label_window() {
        let pad_input = |name: &str, label: usize, image: usize| {
            let args = NiftyNetArgs {
                net_name: Some(name.into()),
                label_size: Some(label),
                image_size: Some(image),
                ..NiftyNetArgs::default()
            };
            let keys = args.overrides().unwrap();
            keys.into_iter().find(|(_, k, _)| k == "network.params.pad_input").map(|(f, _, v)| (f, v))
        };
        // NiftyNet's DeepMedic: 57³ in, 9³ out, as the INI translation runs it.
        let unpadded = Some(("--label_size".to_owned(), "false".to_owned()));
        assert_eq!(pad_input("deepmedic", 9, 57), unpadded);
        assert_eq!(pad_input("unet_2d", 9, 57), unpadded);
        assert_eq!(pad_input("unet2d", 9, 57), unpadded);
        // The same window, or a network with padded convolutions: the plugin's default.
        assert_eq!(pad_input("deepmedic", 57, 57), None);
        assert_eq!(pad_input("toynet", 9, 57), None);
        let no_label =
            NiftyNetArgs { net_name: Some("deepmedic".into()), image_size: Some(57), ..NiftyNetArgs::default() };
        assert!(no_label.overrides().unwrap().iter().all(|(_, k, _)| k != "network.params.pad_input"));
    }
}

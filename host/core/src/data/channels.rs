//! How many channels each image section gives the network: a 3D image one, a 4D image
//! (`X×Y×Z×C`, or NIfTI's vector layout `X×Y×Z×1×C`) C. The network's `in_channels` is
//! the total over the image sections, in `segmentation.image` order. Training takes the
//! layout from the data (every subject must have the same), checkpoints and bundles
//! record it, and inference refuses images that do not have it.

use std::path::PathBuf;

use serde::Serialize;

use super::Subject;
use crate::io::nifti::read_channels;
use crate::io::IoError;

/// The channels of each image section, in `segmentation.image` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelLayout {
    /// The image sections.
    sections: Vec<String>,
    /// The channels of each section.
    channels: Vec<usize>,
}

impl ChannelLayout {
    /// One channel per image section: what a model whose checkpoint or bundle records no
    /// layout (one written before layouts were recorded) was trained with.
    pub fn one_per_section(sections: &[String]) -> ChannelLayout {
        ChannelLayout { sections: sections.to_vec(), channels: vec![1; sections.len()] }
    }

    /// The layout recorded with a model: one count per image section, or none for a model
    /// recorded before layouts were (one channel per section).
    ///
    /// # Errors
    /// A record with another number of counts than `sections`, or a count of 0.
    pub fn recorded(sections: &[String], channels: &[usize]) -> Result<ChannelLayout, String> {
        if channels.is_empty() {
            return Ok(ChannelLayout::one_per_section(sections));
        }
        if channels.len() != sections.len() || channels.contains(&0) {
            return Err(format!(
                "records image channels {channels:?}, expected one count of at least 1 for each of the {} image section(s) [{}]",
                sections.len(),
                sections.join(", ")
            ));
        }
        Ok(ChannelLayout { sections: sections.to_vec(), channels: channels.to_vec() })
    }

    /// The layout of a subject, whose images are one file per section of `sections`, from
    /// the files' headers (no voxel is read). The one place a subject's channels are
    /// counted: training, `check` and inference all count them here.
    ///
    /// # Errors
    /// An image whose header cannot be read, or whose shape is not a 3D or 4D volume.
    pub fn of_subject(sections: &[String], subject: &Subject) -> Result<ChannelLayout, IoError> {
        let channels = subject.images.iter().map(|p| read_channels(p)).collect::<Result<_, _>>()?;
        Ok(ChannelLayout { sections: sections.to_vec(), channels })
    }

    /// The network's `in_channels`: the channels of all sections.
    pub fn total(&self) -> usize {
        self.channels.iter().sum()
    }

    /// The channels of each section, in order.
    pub fn counts(&self) -> &[usize] {
        &self.channels
    }

    /// Each difference of `found`, the layout of the image `files` (one per section), from
    /// this one: one line per file naming it, its section, the channels expected (`why`
    /// says where the expectation comes from) and found.
    pub fn differences(&self, found: &ChannelLayout, files: &[PathBuf], why: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .sections
            .iter()
            .zip(self.channels.iter().zip(&found.channels))
            .zip(files)
            .filter(|((_, (expected, got)), _)| expected != got)
            .map(|((section, (expected, got)), file)| {
                format!(
                    "image {} (section `{section}`) has {got} channel(s), expected {expected} ({why})",
                    file.display()
                )
            })
            .collect();
        if !lines.is_empty() && found.total() != self.total() {
            let last = lines.len() - 1;
            lines[last].push_str(&format!(
                "; in all {} channel(s), expected {} (in_channels)",
                found.total(),
                self.total()
            ));
        }
        lines
    }
}

impl std::fmt::Display for ChannelLayout {
    /// `t1: 2, t2: 1 (in_channels 3)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (section, channels)) in self.sections.iter().zip(&self.channels).enumerate() {
            write!(f, "{}{section}: {channels}", if n == 0 { "" } else { ", " })?;
        }
        write!(f, " (in_channels {})", self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections() -> Vec<String> {
        vec!["mri".into(), "t2".into()]
    }

    #[test]
    fn a_record_without_counts_is_one_channel_per_section() {
        let old = ChannelLayout::recorded(&sections(), &[]).unwrap();
        assert_eq!((old.counts(), old.total()), (&[1, 1][..], 2));
        let new = ChannelLayout::recorded(&sections(), &[2, 1]).unwrap();
        assert_eq!(new.total(), 3);
        assert_eq!(new.to_string(), "mri: 2, t2: 1 (in_channels 3)");
        assert!(ChannelLayout::recorded(&sections(), &[2]).unwrap_err().contains("[mri, t2]"));
        assert!(ChannelLayout::recorded(&sections(), &[2, 0]).is_err());
    }

    #[test]
    fn differences_name_the_file_the_section_and_both_counts() {
        let expected = ChannelLayout::recorded(&sections(), &[2, 1]).unwrap();
        let files = [PathBuf::from("a_mri.nii.gz"), PathBuf::from("a_t2.nii.gz")];
        assert!(expected.differences(&expected, &files, "the model's").is_empty());
        let found = ChannelLayout::recorded(&sections(), &[1, 1]).unwrap();
        let lines = expected.differences(&found, &files, "the model's");
        assert_eq!(lines.len(), 1);
        for part in
            ["a_mri.nii.gz", "`mri`", "has 1 channel(s), expected 2 (the model's)", "in all 2 channel(s), expected 3"]
        {
            assert!(lines[0].contains(part), "{part} in {}", lines[0]);
        }
    }
}

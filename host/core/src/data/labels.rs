//! Label volumes in memory: class indices in the narrowest integer type their classes fit
//! (`u8` up to 256 classes, else [`Label`]), and where each class lies, for the samplers
//! that centre windows on a class or on the foreground.
//!
//! After the label map (or the check that labels are integers in `0..num_classes`) a
//! label is a class index, so a subject's labels take one byte per voxel in the loaders'
//! cache instead of four as `f32` (or two as [`Label`]); they become [`Label`] only when a
//! window is cut ([`LabelVolume::extract`]). Both buffers are allocated through the
//! memory budget ([`crate::budget`]).

use super::dataset::Label;
use super::window::extract;
use crate::budget::{self, AllocError};

/// The most classes a [`Label`] holds (class indices `0..=32767`).
pub const MAX_CLASSES: usize = Label::MAX as usize + 1;

/// A volume of class indices `[k, j, i]` (one channel), in the narrowest type that holds
/// `0..num_classes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelVolume {
    /// Up to 256 classes.
    U8(Vec<u8>),
    /// Up to [`MAX_CLASSES`] classes.
    I16(Vec<Label>),
}

impl LabelVolume {
    /// Class indices from `values` (integers in `0..num_classes`: labels after the label
    /// map, checked by the caller), as `u8` when `num_classes <= 256`, else as [`Label`].
    /// A value outside the type saturates (it cannot occur after the check).
    ///
    /// # Errors
    /// `num_classes` above [`MAX_CLASSES`] (as [`AllocError::OverBudget`] cannot say it:
    /// a message), or the buffer over the memory budget or refused; `what` names the
    /// volume (subject and file).
    pub fn from_classes(values: &[f32], num_classes: usize, what: &dyn Fn() -> String) -> Result<Self, String> {
        if num_classes > MAX_CLASSES {
            return Err(format!("{}: {num_classes} classes do not fit a 16-bit label (at most {MAX_CLASSES})", what()));
        }
        let alloc = |e: AllocError| e.to_string();
        if num_classes <= 256 {
            let mut out =
                budget::try_with_capacity::<u8>(values.len(), &|| format!("{} as uint8", what())).map_err(alloc)?;
            out.extend(values.iter().map(|&v| v as u8));
            Ok(LabelVolume::U8(out))
        } else {
            let mut out =
                budget::try_with_capacity::<Label>(values.len(), &|| format!("{} as int16", what())).map_err(alloc)?;
            out.extend(values.iter().map(|&v| v as Label));
            Ok(LabelVolume::I16(out))
        }
    }

    /// Voxels.
    pub fn len(&self) -> usize {
        match self {
            LabelVolume::U8(v) => v.len(),
            LabelVolume::I16(v) => v.len(),
        }
    }

    /// Whether there is no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        match self {
            LabelVolume::U8(v) => v.len(),
            LabelVolume::I16(v) => 2 * v.len(),
        }
    }

    /// Appends the window starting at voxel `corner` `(i, j, k)` as [`Label`]s, voxels
    /// outside the volume 0 (see [`extract`]).
    ///
    /// # Shapes
    /// The volume is `[k, j, i]` with `dims = (i, j, k)`; appended: `[wk, wj, wi]`.
    pub fn extract(&self, dims: [usize; 3], corner: [isize; 3], window: [usize; 3], out: &mut Vec<Label>) {
        match self {
            LabelVolume::U8(v) => extract(v, dims, 1, corner, window, 0, out),
            LabelVolume::I16(v) => extract(v, dims, 1, corner, window, 0, out),
        }
    }

    /// Visits the voxels of `range` in order, with their index and class, until `visit`
    /// returns false.
    fn for_each_class(&self, range: std::ops::Range<usize>, mut visit: impl FnMut(usize, usize) -> bool) {
        match self {
            LabelVolume::U8(v) => {
                for (i, &c) in v[range.clone()].iter().enumerate() {
                    if !visit(range.start + i, c as usize) {
                        return;
                    }
                }
            }
            LabelVolume::I16(v) => {
                for (i, &c) in v[range.clone()].iter().enumerate() {
                    if !visit(range.start + i, c.max(0) as usize) {
                        return;
                    }
                }
            }
        }
    }
}

/// Voxels per block of a [`ClassIndex`].
const BLOCK: usize = 4096;

/// Where the voxels of each group of a label volume lie (a group: a class, or all
/// labelled voxels), without a list of their indices: the count of each group's voxels
/// before each block of [`BLOCK`] voxels. The `r`-th voxel of a group (in index order) is
/// found by a binary search over the blocks and a scan of one block, and is the one a
/// list of the group's voxel indices would give at position `r`; the index takes
/// `4 · groups / 4096` bytes per voxel instead of 4 bytes per indexed voxel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassIndex {
    groups: usize,
    blocks: usize,
    /// `[group][block + 1]`: the group's voxels in the blocks before.
    before: Vec<u32>,
    /// Whether the one group is the labelled voxels (else the groups are the classes).
    foreground: bool,
}

impl ClassIndex {
    /// One group per class `0..num_classes`.
    ///
    /// # Errors
    /// More than `u32::MAX` voxels, or the index over the memory budget; `what` names the
    /// volume.
    pub fn by_class(labels: &LabelVolume, num_classes: usize, what: &dyn Fn() -> String) -> Result<Self, String> {
        Self::build(labels, num_classes, false, what)
    }

    /// One group: the labelled (non-zero) voxels.
    ///
    /// # Errors
    /// As [`ClassIndex::by_class`].
    pub fn foreground(labels: &LabelVolume, what: &dyn Fn() -> String) -> Result<Self, String> {
        Self::build(labels, 1, true, what)
    }

    fn group_of(&self, class: usize) -> Option<usize> {
        match self.foreground {
            true => (class != 0).then_some(0),
            false => (class < self.groups).then_some(class),
        }
    }

    fn build(labels: &LabelVolume, groups: usize, foreground: bool, what: &dyn Fn() -> String) -> Result<Self, String> {
        if labels.len() > u32::MAX as usize {
            return Err(format!("{} has more than 2^32 voxels", what()));
        }
        let blocks = labels.len().div_ceil(BLOCK);
        let what = || format!("the class index of {}", what());
        let mut before =
            budget::try_zeroed::<u32>(groups.saturating_mul(blocks + 1), &what).map_err(|e| e.to_string())?;
        let mut index = ClassIndex { groups, blocks, before: Vec::new(), foreground };
        let mut counts = vec![0u32; groups];
        for b in 0..blocks {
            let range = b * BLOCK..((b + 1) * BLOCK).min(labels.len());
            labels.for_each_class(range, |_, class| {
                if let Some(g) = index.group_of(class) {
                    counts[g] += 1;
                }
                true
            });
            for (g, &n) in counts.iter().enumerate() {
                before[g * (blocks + 1) + b + 1] = n;
            }
        }
        index.before = before;
        Ok(index)
    }

    fn run(&self, group: usize) -> &[u32] {
        &self.before[group * (self.blocks + 1)..(group + 1) * (self.blocks + 1)]
    }

    /// The number of voxels of `group` (0 for a group past the last).
    pub fn count(&self, group: usize) -> usize {
        if group >= self.groups {
            return 0;
        }
        self.run(group)[self.blocks] as usize
    }

    /// The number of voxels of each group.
    pub fn counts(&self) -> Vec<usize> {
        (0..self.groups).map(|g| self.count(g)).collect()
    }

    /// The voxel index of the `r`-th voxel of `group` in index order (`r` below its
    /// count), or `None`.
    pub fn nth(&self, labels: &LabelVolume, group: usize, r: usize) -> Option<usize> {
        if r >= self.count(group) {
            return None;
        }
        let run = self.run(group);
        // The last block whose preceding count is <= r holds the voxel.
        let block = run.partition_point(|&n| n as usize <= r) - 1;
        let mut left = r - run[block] as usize;
        let mut found = None;
        labels.for_each_class(block * BLOCK..((block + 1) * BLOCK).min(labels.len()), |i, class| {
            if self.group_of(class) == Some(group) {
                if left == 0 {
                    found = Some(i);
                    return false;
                }
                left -= 1;
            }
            true
        });
        found
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        4 * self.before.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "label l.nii of subject `s`".to_owned()
    }

    #[test]
    fn classes_go_to_the_narrowest_type() {
        let values = [0.0, 1.0, 255.0, 2.0];
        let l = LabelVolume::from_classes(&values, 256, &what).unwrap();
        assert_eq!(l, LabelVolume::U8(vec![0, 1, 255, 2]));
        assert_eq!((l.len(), l.bytes()), (4, 4));
        let wide = [0.0, 256.0, 300.0, 32767.0];
        let l = LabelVolume::from_classes(&wide, 257, &what).unwrap();
        assert_eq!(l, LabelVolume::I16(vec![0, 256, 300, 32767]));
        assert_eq!(l.bytes(), 8);
        let l = LabelVolume::from_classes(&wide, MAX_CLASSES, &what).unwrap();
        assert!(matches!(l, LabelVolume::I16(_)));
        let e = LabelVolume::from_classes(&wide, MAX_CLASSES + 1, &what).unwrap_err();
        assert!(e.contains("l.nii") && e.contains("32769 classes"), "{e}");
    }

    #[test]
    fn windows_are_cut_as_labels_from_either_type() {
        // A 4×3×2 volume of classes equal to flat index mod 7.
        let values: Vec<f32> = (0..24).map(|v| (v % 7) as f32).collect();
        let narrow = LabelVolume::from_classes(&values, 7, &what).unwrap();
        let wide = LabelVolume::from_classes(&values, 1000, &what).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        narrow.extract([4, 3, 2], [-1, 1, 1], [3, 2, 1], &mut a);
        wide.extract([4, 3, 2], [-1, 1, 1], [3, 2, 1], &mut b);
        // k=1: rows j=1 (16..20) and j=2 (20..24), i = -1 (outside), 0, 1.
        assert_eq!(a, vec![0, 16 % 7, 17 % 7, 0, 20 % 7, 21 % 7]);
        assert_eq!(a, b);
    }

    #[test]
    fn the_class_index_finds_the_voxels_a_list_of_indices_would() {
        // Several blocks, classes unevenly spread, one class absent.
        let n = 3 * BLOCK + 123;
        let class = |i: usize| {
            if i % 5 == 0 {
                0
            } else if i % 97 < 3 {
                3
            } else if i > 2 * BLOCK {
                1
            } else {
                0
            }
        };
        let values: Vec<f32> = (0..n).map(|i| class(i) as f32).collect();
        for labels in [LabelVolume::from_classes(&values, 4, &what), LabelVolume::from_classes(&values, 300, &what)] {
            let labels = labels.unwrap();
            let index = ClassIndex::by_class(&labels, 4, &what).unwrap();
            let lists: Vec<Vec<usize>> = (0..4).map(|c| (0..n).filter(|&i| class(i) == c).collect()).collect();
            assert_eq!(index.counts(), lists.iter().map(Vec::len).collect::<Vec<_>>());
            assert_eq!(index.counts()[2], 0);
            // A group past the last has no voxel.
            assert_eq!((index.count(4), index.nth(&labels, 4, 0)), (0, None));
            for (c, list) in lists.iter().enumerate() {
                for (r, &i) in list.iter().enumerate() {
                    assert_eq!(index.nth(&labels, c, r), Some(i), "class {c}, r {r}");
                }
                assert_eq!(index.nth(&labels, c, list.len()), None);
            }
            let fg = ClassIndex::foreground(&labels, &what).unwrap();
            let list: Vec<usize> = (0..n).filter(|&i| class(i) != 0).collect();
            assert_eq!(fg.counts(), vec![list.len()]);
            for (r, &i) in list.iter().enumerate().step_by(7) {
                assert_eq!(fg.nth(&labels, 0, r), Some(i));
            }
            assert!(index.bytes() < n / 100, "{} bytes of index for {n} voxels", index.bytes());
        }
    }
}

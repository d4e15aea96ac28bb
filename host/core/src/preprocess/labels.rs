//! Label normalisation: arbitrary integral label values (e.g. {0, 4, 10, 255}) seen in
//! training label volumes ↔ class indices `0..K` in sorted order of the values.

use std::collections::BTreeSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::saved::SavedModel;
use super::PreprocessError;

/// The `format` field of a saved label map.
pub const LABEL_MAP_FORMAT: &str = "niftyhost-label-map";
/// The version of the saved label map format this build writes and reads.
pub const LABEL_MAP_VERSION: u32 = 1;

const WHAT: &str = "label map";
const CHUNK: usize = 1 << 16;
/// Largest magnitude accepted for a label value.
const MAX_LABEL: f32 = 2_147_483_648.0;
/// Largest value range for which lookups use a dense table.
const DENSE_RANGE: i64 = 1 << 20;

/// A label value as an integer, or the error naming it.
fn integral(v: f32) -> Result<i64, PreprocessError> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < MAX_LABEL {
        Ok(v as i64)
    } else {
        Err(PreprocessError::NonIntegralLabel { value: v })
    }
}

/// Collects the label values of training label volumes, one volume at a time.
#[derive(Debug, Clone, Default)]
pub struct LabelMapLearner {
    seen: BTreeSet<i64>,
}

impl LabelMapLearner {
    /// An empty learner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the values of one label volume (any shape).
    ///
    /// # Errors
    /// [`PreprocessError::NonIntegralLabel`] naming the first value that is not an
    /// integer in `(−2³¹, 2³¹)`; the learner is then unchanged.
    pub fn add(&mut self, labels: &[f32]) -> Result<(), PreprocessError> {
        let sets: Vec<Result<BTreeSet<i64>, PreprocessError>> = labels
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut set = BTreeSet::new();
                let mut last = None;
                for &v in chunk {
                    if last != Some(v.to_bits()) {
                        set.insert(integral(v)?);
                        last = Some(v.to_bits());
                    }
                }
                Ok(set)
            })
            .collect();
        let mut found = BTreeSet::new();
        for set in sets {
            found.extend(set?);
        }
        self.seen.extend(found);
        Ok(())
    }

    /// The label map of every value seen.
    ///
    /// # Errors
    /// [`PreprocessError::NoTrainingData`] when no value was seen.
    pub fn finish(self) -> Result<LabelMap, PreprocessError> {
        if self.seen.is_empty() {
            return Err(PreprocessError::NoTrainingData { what: "label values" });
        }
        LabelMap::from_values(self.seen.into_iter().collect())
    }
}

/// A learned label map: the sorted distinct label values; value `values[c]` is class `c`.
/// Saved as JSON: `{"format": "niftyhost-label-map", "version": 1, "values": [0, 4, 10, 255]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMap {
    /// Always [`LABEL_MAP_FORMAT`].
    pub format: String,
    /// The format version, [`LABEL_MAP_VERSION`].
    pub version: u32,
    /// Distinct label values in increasing order.
    pub values: Vec<i64>,
}

/// Value → class lookup: a dense table for compact value ranges, else binary search.
enum Lookup<'a> {
    Dense { min: i64, table: Vec<i32> },
    Sparse(&'a [i64]),
}

impl Lookup<'_> {
    #[inline]
    fn class(&self, v: f32) -> Option<usize> {
        let v = integral(v).ok()?;
        match self {
            Self::Dense { min, table } => {
                let at = usize::try_from(v.checked_sub(*min)?).ok()?;
                table.get(at).and_then(|&c| usize::try_from(c).ok())
            }
            Self::Sparse(values) => values.binary_search(&v).ok(),
        }
    }
}

impl LabelMap {
    /// A label map of the given values (sorted and deduplicated here).
    ///
    /// # Errors
    /// [`PreprocessError::InvalidModel`] for an empty list or a value outside
    /// `(−2³¹, 2³¹)`.
    pub fn from_values(mut values: Vec<i64>) -> Result<Self, PreprocessError> {
        values.sort_unstable();
        values.dedup();
        let map = Self { format: LABEL_MAP_FORMAT.to_string(), version: LABEL_MAP_VERSION, values };
        map.validate()?;
        Ok(map)
    }

    /// Learns the map from training label volumes; see [`LabelMapLearner`] to add them
    /// one at a time.
    ///
    /// # Errors
    /// As [`LabelMapLearner::add`] and [`LabelMapLearner::finish`].
    pub fn learn<'a>(volumes: impl IntoIterator<Item = &'a [f32]>) -> Result<Self, PreprocessError> {
        let mut learner = LabelMapLearner::new();
        for v in volumes {
            learner.add(v)?;
        }
        learner.finish()
    }

    /// The number of classes `K`.
    pub fn num_classes(&self) -> usize {
        self.values.len()
    }

    /// The class index of a label value, if it was seen in training.
    pub fn class_of(&self, value: f32) -> Option<usize> {
        integral(value).ok().and_then(|v| self.values.binary_search(&v).ok())
    }

    /// The label value of a class index, if it is in `0..K`.
    pub fn value_of(&self, class: usize) -> Option<i64> {
        self.values.get(class).copied()
    }

    /// Checks format, version, and that the values are strictly increasing, non-empty and
    /// inside `(−2³¹, 2³¹)`.
    ///
    /// # Errors
    /// [`PreprocessError::UnsupportedFormat`], [`PreprocessError::InvalidModel`].
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.format != LABEL_MAP_FORMAT || self.version != LABEL_MAP_VERSION {
            return Err(PreprocessError::UnsupportedFormat {
                what: WHAT,
                expected_format: LABEL_MAP_FORMAT,
                expected_version: LABEL_MAP_VERSION,
                got: format!("format {:?} version {}", self.format, self.version),
            });
        }
        let limit = MAX_LABEL as i64;
        let ok = !self.values.is_empty()
            && self.values.windows(2).all(|w| w[0] < w[1])
            && self.values.iter().all(|v| v.abs() < limit);
        if !ok {
            return Err(PreprocessError::InvalidModel {
                what: WHAT,
                reason: format!("expected strictly increasing values in (-2^31, 2^31), got {:?}", self.values),
            });
        }
        Ok(())
    }

    fn lookup(&self) -> Lookup<'_> {
        let (min, max) = (self.values[0], self.values[self.values.len() - 1]);
        if max - min < DENSE_RANGE {
            let mut table = vec![-1i32; (max - min + 1) as usize];
            for (c, &v) in self.values.iter().enumerate() {
                table[(v - min) as usize] = c as i32;
            }
            Lookup::Dense { min, table }
        } else {
            Lookup::Sparse(&self.values)
        }
    }

    /// Replaces each label value by its class index `0..K`, in place.
    ///
    /// # Errors
    /// [`PreprocessError::NonIntegralLabel`] or [`PreprocessError::UnknownLabel`] naming
    /// a value that is not in the map; `labels` is then unchanged.
    pub fn apply(&self, labels: &mut [f32]) -> Result<(), PreprocessError> {
        self.validate()?;
        let lookup = self.lookup();
        let bad = labels.par_chunks(CHUNK).find_map_first(|c| c.iter().copied().find(|&v| lookup.class(v).is_none()));
        if let Some(value) = bad {
            integral(value)?;
            return Err(PreprocessError::UnknownLabel { value, known: self.values.clone() });
        }
        labels.par_chunks_mut(CHUNK).for_each(|c| {
            for v in c {
                *v = lookup.class(*v).unwrap_or(0) as f32;
            }
        });
        Ok(())
    }

    /// Replaces each class index `0..K` by its original label value, in place (for
    /// writing network outputs). Values above 2²⁴ are rounded by `f32`; take them from
    /// [`LabelMap::value_of`] for integer outputs.
    ///
    /// # Errors
    /// [`PreprocessError::ClassOutOfRange`] naming a value that is not an integer in
    /// `0..K`; `classes` is then unchanged.
    pub fn invert(&self, classes: &mut [f32]) -> Result<(), PreprocessError> {
        self.validate()?;
        let k = self.values.len();
        let class = |v: f32| (v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v < k as f32).then_some(v as usize);
        let bad = classes.par_chunks(CHUNK).find_map_first(|c| c.iter().copied().find(|&v| class(v).is_none()));
        if let Some(value) = bad {
            return Err(PreprocessError::ClassOutOfRange { value, classes: k });
        }
        classes.par_chunks_mut(CHUNK).for_each(|c| {
            for v in c {
                *v = class(*v).map_or(0.0, |i| self.values[i] as f32);
            }
        });
        Ok(())
    }
}

impl SavedModel for LabelMap {
    const WHAT: &'static str = WHAT;
    const FORMAT: &'static str = LABEL_MAP_FORMAT;
    const VERSION: u32 = LABEL_MAP_VERSION;

    fn validate(&self) -> Result<(), PreprocessError> {
        LabelMap::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_labels_round_trip() {
        let a = [0.0, 4.0, 4.0, 10.0, 0.0];
        let b = [255.0, 0.0, 10.0];
        let map = LabelMap::learn([&a[..], &b[..]]).unwrap();
        assert_eq!(map.values, vec![0, 4, 10, 255]);
        assert_eq!(map.num_classes(), 4);
        let mut x = a.to_vec();
        map.apply(&mut x).unwrap();
        assert_eq!(x, [0.0, 1.0, 1.0, 2.0, 0.0]);
        map.invert(&mut x).unwrap();
        assert_eq!(x, a);
        let mut y = b.to_vec();
        map.apply(&mut y).unwrap();
        assert_eq!(y, [3.0, 0.0, 2.0]);
        assert_eq!((map.class_of(10.0), map.value_of(3), map.value_of(4)), (Some(2), Some(255), None));
        // A sparse range uses the binary-search lookup.
        let sparse = LabelMap::from_values(vec![5_000_000, -3, 7, 7]).unwrap();
        let mut z = vec![7.0, -3.0, 5_000_000.0];
        sparse.apply(&mut z).unwrap();
        assert_eq!(z, [1.0, 0.0, 2.0]);
        sparse.invert(&mut z).unwrap();
        assert_eq!(z, [7.0, -3.0, 5_000_000.0]);
    }

    #[test]
    fn preprocess_labels_unknown_value_is_an_error() {
        let map = LabelMap::from_values(vec![0, 4, 10, 255]).unwrap();
        let mut x = vec![0.0, 4.0, 7.0, 10.0];
        let err = map.apply(&mut x).unwrap_err();
        assert!(matches!(err, PreprocessError::UnknownLabel { value, .. } if value == 7.0));
        assert!(err.to_string().contains("label value 7 "), "{err}");
        assert_eq!(x, [0.0, 4.0, 7.0, 10.0], "unchanged on error");
        let err = map.apply(&mut [1.5]).unwrap_err();
        assert!(matches!(err, PreprocessError::NonIntegralLabel { .. }), "{err}");
        let err = map.invert(&mut [0.0, 4.0]).unwrap_err();
        assert!(matches!(err, PreprocessError::ClassOutOfRange { classes: 4, .. }), "{err}");
        let err = LabelMapLearner::new().add(&[0.0, f32::NAN]).unwrap_err();
        assert!(matches!(err, PreprocessError::NonIntegralLabel { .. }), "{err}");
        assert!(matches!(LabelMapLearner::new().finish(), Err(PreprocessError::NoTrainingData { .. })));
    }

    #[test]
    fn preprocess_labels_json_round_trip() {
        let map = LabelMap::from_values(vec![255, 0, 10, 4]).unwrap();
        let json = map.to_json().unwrap();
        assert_eq!(LabelMap::from_json(&json).unwrap(), map);
        let path = std::env::temp_dir().join(format!("niftyhost-preprocess-labels-{}.json", std::process::id()));
        map.save(&path).unwrap();
        assert_eq!(LabelMap::load(&path).unwrap(), map);
        std::fs::remove_file(&path).unwrap();
        let err = LabelMap::from_json(r#"{"format": "niftyhost-label-map", "version": 9, "values": [0]}"#).unwrap_err();
        assert!(matches!(err, PreprocessError::UnsupportedFormat { .. }), "{err}");
        let err =
            LabelMap::from_json(r#"{"format": "niftyhost-label-map", "version": 1, "values": [3, 1]}"#).unwrap_err();
        assert!(matches!(err, PreprocessError::InvalidModel { .. }), "{err}");
    }
}

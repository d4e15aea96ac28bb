//! What inference writes, and how the aggregated volume on the network's grid goes back
//! to the input's geometry: crop the padding, resample to the input's voxel size
//! (linear, class by class), reorient to the input's axis codes, invert the label map.

use std::path::Path;

use super::super::EngineError;
use super::aggregate::{Aggregated, Store};
use super::postprocess::Postprocess;
pub use crate::config::OutputKind;
use crate::data::prepare::Geometry;
use crate::io::nifti::{write_image, WriteOptions};
use crate::io::{write_labels, Volume};
use crate::preprocess::{crop, resample_to_grid, Interp, LabelMap};

/// What the aggregator keeps for an `inference.output` (an extension of the
/// configuration's type, which knows no aggregator).
pub trait OutputStore {
    /// What the aggregator keeps for this output on `geometry`: labels directly when
    /// nothing is resampled (cropping and reorienting commute with the arg-max),
    /// quantised probabilities when labels need resampling (unless they are resampled by
    /// nearest neighbour, `inference.output_interp_order = 0`: then labels too).
    fn store(&self, geometry: &Geometry) -> Store;
}

impl OutputStore for OutputKind {
    fn store(&self, geometry: &Geometry) -> Store {
        match self {
            OutputKind::Labels if geometry.resampled == geometry.reoriented => Store::Labels,
            OutputKind::Labels | OutputKind::Probabilities { quantised: true } => Store::Quantised,
            OutputKind::Probabilities { quantised: false } | OutputKind::Logits => Store::Float,
        }
    }
}

fn preprocess_error(id: &str) -> impl Fn(crate::preprocess::PreprocessError) -> EngineError + '_ {
    move |e| EngineError::Other(format!("subject `{id}`: {e}"))
}

/// One channel on the prepared grid → the original grid: crop, resample (linear),
/// reorient.
fn channel_to_original(geometry: &Geometry, data: Vec<f32>, id: &str) -> Result<Vec<f32>, EngineError> {
    let fail = preprocess_error(id);
    let data = if geometry.padding.is_empty() {
        data
    } else {
        crop(&data, 1, &geometry.prepared, &geometry.padding).map_err(&fail)?.0
    };
    let data = if geometry.resampled == geometry.reoriented {
        data
    } else {
        resample_to_grid(&data, 1, &geometry.resampled, &geometry.reoriented, Interp::Linear).map_err(&fail)?
    };
    geometry.labels_to_original(data).map_err(fail)
}

/// Class indices → label values as uint8 (a table lookup through the label map).
fn label_values(mut classes: Vec<u8>, map: Option<&LabelMap>, id: &str) -> Result<Vec<u8>, EngineError> {
    let Some(map) = map else { return Ok(classes) };
    // The value of each class, or None where it does not fit uint8 (an error only if
    // the class occurs). A class past the map's (segmentation.num_classes above the
    // label values found in TRAIN) is 0, as NiftyNet's inverse label mapping writes it.
    let mut table: [Option<u8>; 256] = [Some(0); 256];
    for (c, t) in table.iter_mut().enumerate().take(map.num_classes()) {
        *t = map.value_of(c).and_then(|v| u8::try_from(v).ok());
    }
    for c in classes.iter_mut() {
        *c = table[usize::from(*c)].ok_or_else(|| {
            let value = map.value_of(usize::from(*c)).unwrap_or_default();
            EngineError::Other(format!("subject `{id}`: label value {value} does not fit a uint8 segmentation"))
        })?;
    }
    Ok(classes)
}

fn to_u8(classes: Vec<f32>) -> Vec<u8> {
    // Class indices below 256: checked by the aggregator's class count.
    classes.into_iter().map(|c| c as u8).collect()
}

/// Class indices on the original grid from an aggregated volume.
fn classes_on_original(
    geometry: &Geometry,
    aggregated: Aggregated,
    classes: usize,
    id: &str,
) -> Result<Vec<u8>, EngineError> {
    let prepared_voxels = geometry.prepared.voxels();
    match aggregated {
        // Nothing to undo: the labels as they are (no copy).
        Aggregated::Labels(l) if geometry.prepared == geometry.original => Ok(l),
        Aggregated::Labels(l) => {
            let l: Vec<f32> = l.into_iter().map(f32::from).collect();
            let fail = preprocess_error(id);
            let l = if geometry.padding.is_empty() {
                l
            } else {
                crop(&l, 1, &geometry.prepared, &geometry.padding).map_err(&fail)?.0
            };
            // Only with inference.output_interp_order = 0: labels by nearest neighbour.
            let l = if geometry.resampled == geometry.reoriented {
                l
            } else {
                resample_to_grid(&l, 1, &geometry.resampled, &geometry.reoriented, Interp::Nearest).map_err(&fail)?
            };
            Ok(to_u8(geometry.labels_to_original(l).map_err(fail)?))
        }
        Aggregated::Float(p) => {
            running_argmax(geometry, classes, id, |c| p[c * prepared_voxels..][..prepared_voxels].to_vec()).map(to_u8)
        }
        Aggregated::Quantised(q) => running_argmax(geometry, classes, id, |c| {
            q[c * prepared_voxels..][..prepared_voxels].iter().map(|&v| f32::from(v) / 255.0).collect()
        })
        .map(to_u8),
    }
}

/// The arg-max over classes brought back one at a time (memory: three volumes).
fn running_argmax(
    geometry: &Geometry,
    classes: usize,
    id: &str,
    channel: impl Fn(usize) -> Vec<f32>,
) -> Result<Vec<f32>, EngineError> {
    let mut best = channel_to_original(geometry, channel(0), id)?;
    let mut label = vec![0.0f32; best.len()];
    for c in 1..classes {
        let p = channel_to_original(geometry, channel(c), id)?;
        for ((b, l), v) in best.iter_mut().zip(label.iter_mut()).zip(p) {
            if v > *b {
                *b = v;
                *l = c as f32;
            }
        }
    }
    Ok(label)
}

/// Writes the output of one subject in the geometry of `reference` (the first input
/// file as read).
///
/// # Errors
/// A geometry that does not fit, a label value beyond uint8, or an unwritable file.
#[allow(clippy::too_many_arguments)]
pub fn write_output(
    path: &Path,
    id: &str,
    reference: &Volume,
    geometry: &Geometry,
    aggregated: Aggregated,
    classes: usize,
    kind: OutputKind,
    label_map: Option<&LabelMap>,
    postprocess: &Postprocess,
) -> Result<(), EngineError> {
    let dims = reference.dims;
    match kind {
        OutputKind::Labels => {
            let classes_volume = classes_on_original(geometry, aggregated, classes, id)?;
            let mut labels = label_values(classes_volume, label_map, id)?;
            if !postprocess.is_empty() {
                let p = geometry.original.pixdim();
                postprocess.apply(&mut labels, dims, p[0] * p[1] * p[2]);
            }
            write_labels(path, &reference.header, dims, &labels)?;
        }
        OutputKind::Probabilities { .. } | OutputKind::Logits if geometry.prepared == geometry.original => {
            let what = if kind == OutputKind::Logits { "niftyhost logits" } else { "niftyhost probabilities" };
            let options = WriteOptions { description: what.into(), ..WriteOptions::default() };
            match aggregated {
                Aggregated::Float(p) => write_image(path, &reference.header, dims, classes, &p, &options)?,
                Aggregated::Quantised(q) => {
                    let options = WriteOptions { scl_slope: 1.0 / 255.0, ..options };
                    write_image(path, &reference.header, dims, classes, &q, &options)?
                }
                Aggregated::Labels(_) => {
                    return Err(EngineError::Other("probabilities were aggregated as labels".into()));
                }
            }
        }
        OutputKind::Probabilities { .. } | OutputKind::Logits => {
            let n = geometry.prepared.voxels();
            let voxels = dims.iter().product::<usize>();
            let what = if kind == OutputKind::Logits { "niftyhost logits" } else { "niftyhost probabilities" };
            let options = WriteOptions { description: what.into(), ..WriteOptions::default() };
            match aggregated {
                Aggregated::Float(p) => {
                    let mut out = Vec::with_capacity(voxels * classes);
                    for c in 0..classes {
                        out.extend(channel_to_original(geometry, p[c * n..][..n].to_vec(), id)?);
                    }
                    write_image(path, &reference.header, dims, classes, &out, &options)?
                }
                Aggregated::Quantised(q) => {
                    let mut out = Vec::with_capacity(voxels * classes);
                    for c in 0..classes {
                        let plane = q[c * n..][..n].iter().map(|&v| f32::from(v) / 255.0).collect();
                        let back = channel_to_original(geometry, plane, id)?;
                        out.extend(back.iter().map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8));
                    }
                    let options = WriteOptions { scl_slope: 1.0 / 255.0, ..options };
                    write_image(path, &reference.header, dims, classes, &out, &options)?
                }
                Aggregated::Labels(_) => {
                    return Err(EngineError::Other("probabilities were aggregated as labels".into()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_label_values_and_classes_past_the_map_to_zero() {
        let map = LabelMap::learn([[0.0f32, 2.0, 7.0].as_slice()]).unwrap();
        assert_eq!(label_values(vec![0, 1, 2, 3, 159], Some(&map), "s").unwrap(), [0, 2, 7, 0, 0]);
        let wide = LabelMap::learn([[0.0f32, 300.0].as_slice()]).unwrap();
        let err = label_values(vec![1], Some(&wide), "s").unwrap_err().to_string();
        assert!(err.contains("label value 300 does not fit"), "{err}");
    }
}

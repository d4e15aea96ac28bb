//! Axial, coronal and sagittal slices through the middle of a training window: the
//! input, the label and the prediction side by side, as 8-bit grey images.

use tch::{Kind, Tensor};

/// One grey image, rows top to bottom.
pub struct GreyImage {
    /// View name: axial, coronal or sagittal.
    pub plane: &'static str,
    /// Pixels, `width × height`.
    pub pixels: Vec<u8>,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Scales a 2D tensor to 0..=255 between its minimum and maximum (all 0 if flat).
fn to_grey(slice: &Tensor) -> Tensor {
    let slice = slice.to_kind(Kind::Float);
    let (lo, hi) = (slice.min().double_value(&[]), slice.max().double_value(&[]));
    let range = if hi > lo { hi - lo } else { 1.0 };
    ((slice - lo) * (255.0 / range)).clamp(0.0, 255.0)
}

/// The three middle slices of `[D, H, W]` = `(k, j, i)` volumes, each row of the result
/// holding `volumes` side by side. With NIfTI's usual RAS-like storage, superior and
/// anterior end up at the top of the image.
///
/// # Shapes
/// every volume `[D, H, W]`, the same shape (CPU tensors)
pub fn middle_slices(volumes: &[(&Tensor, Option<f64>)]) -> Vec<GreyImage> {
    let Some((first, _)) = volumes.first() else { return Vec::new() };
    let size = first.size();
    let (d, h, w) = (size[0], size[1], size[2]);
    // (plane, tensor dimension held fixed, dimension flipped so "up" is up).
    let planes: [(&'static str, i64); 3] = [("axial", 0), ("coronal", 1), ("sagittal", 2)];
    planes
        .iter()
        .map(|&(plane, dim)| {
            let index = [d, h, w][dim as usize] / 2;
            let tiles: Vec<Tensor> = volumes
                .iter()
                .map(|(v, max)| {
                    let slice = v.select(dim, index);
                    let grey = match max {
                        // Labels: a fixed scale, so a class keeps its shade across steps.
                        Some(max) => (slice.to_kind(Kind::Float) * (255.0 / max.max(1.0))).clamp(0.0, 255.0),
                        None => to_grey(&slice),
                    };
                    // Rows of the slice run along the lower remaining axis: flip it.
                    grey.flip([0])
                })
                .collect();
            let montage = Tensor::cat(&tiles, 1).to_kind(Kind::Uint8).contiguous();
            let (height, width) = (montage.size()[0] as u32, montage.size()[1] as u32);
            let count = (height * width) as usize;
            let mut pixels = vec![0u8; count];
            montage.copy_data_u8(&mut pixels, count);
            GreyImage { plane, pixels, width, height }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn slices_hold_the_volumes_side_by_side_with_up_at_the_top() {
        // k increases with z: the top row of the coronal and sagittal views is the
        // highest k, the top row of the axial view the highest j.
        let v = Tensor::arange(4, (Kind::Float, Device::Cpu)).view([4, 1, 1]).expand([4, 6, 8], false).contiguous();
        let images = middle_slices(&[(&v, None), (&v, Some(3.0))]);
        let names: Vec<&str> = images.iter().map(|i| i.plane).collect();
        assert_eq!(names, ["axial", "coronal", "sagittal"]);
        let axial = &images[0];
        assert_eq!((axial.width, axial.height), (16, 6));
        let coronal = &images[1];
        assert_eq!((coronal.width, coronal.height), (16, 4));
        assert_eq!(coronal.pixels[0], 255, "top row is the highest k");
        assert_eq!(coronal.pixels[(coronal.width * 3) as usize], 0, "bottom row is the lowest k");
        assert_eq!(images[2].width, 12);
    }
}

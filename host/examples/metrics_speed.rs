//! Times the full segmentation metric set on the 1 mm MNI152 brain mask (197×233×189)
//! against a copy of itself eroded by one voxel.
//!
//! ```sh
//! cargo run --release -p niftyhost --example metrics_speed [-- MASK.nii.gz [REPEATS]]
//! ```

use std::time::Instant;

use niftyhost::io::read_volume;
use niftyhost::metrics::{binary_metrics, evaluate_labels, EvalOptions};

/// Binary erosion with the 6-connected cross: a voxel stays when it and its 6 face
/// neighbours are foreground (outside the volume is background).
fn erode(mask: &[f32], dims: [usize; 3]) -> Vec<f32> {
    let [nx, ny, nz] = dims;
    let on = |i: isize, j: isize, k: isize| {
        i >= 0
            && j >= 0
            && k >= 0
            && (i as usize) < nx
            && (j as usize) < ny
            && (k as usize) < nz
            && mask[i as usize + nx * (j as usize + ny * k as usize)] > 0.5
    };
    let mut out = vec![0.0; mask.len()];
    for k in 0..nz as isize {
        for j in 0..ny as isize {
            for i in 0..nx as isize {
                let keep = on(i, j, k)
                    && on(i - 1, j, k)
                    && on(i + 1, j, k)
                    && on(i, j - 1, k)
                    && on(i, j + 1, k)
                    && on(i, j, k - 1)
                    && on(i, j, k + 1);
                if keep {
                    out[i as usize + nx * (j as usize + ny * k as usize)] = 1.0;
                }
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("/work/shared/data/mni152/brainmask_1mm.nii.gz", String::as_str);
    let repeats: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let v = read_volume(path.as_ref()).expect("readable mask");
    let reference: Vec<f32> = v.data.iter().map(|&x| if x > 0.5 { 1.0 } else { 0.0 }).collect();
    let seg = erode(&reference, v.dims);
    println!("{path}: {:?} voxels at {:?} mm, {} threads", v.dims, v.pixdim, rayon::current_num_threads());

    let options = EvalOptions::default();
    let mut best_all = f64::INFINITY;
    let mut best_binary = f64::INFINITY;
    let mut rows = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        rows = evaluate_labels(&seg, &reference, v.dims, v.pixdim, &options);
        best_all = best_all.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let s: Vec<bool> = seg.iter().map(|&x| x > 0.5).collect();
        let r: Vec<bool> = reference.iter().map(|&x| x > 0.5).collect();
        let m = binary_metrics(&s, &r, v.dims, v.pixdim, options.tolerance_mm);
        best_binary = best_binary.min(t.elapsed().as_secs_f64());
        std::hint::black_box(m);
    }
    let m = rows[0].metrics.as_ref().expect("label unit first");
    let c = rows.iter().find_map(|r| r.components.as_ref()).expect("cc unit");
    println!(
        "dice {:.4}  HD {:.3} mm  HD95 {:.3} mm  ASSD {:.4} mm  NSD@{} mm {:.4}  surfaces {}/{} voxels  components {}/{}",
        m.dice,
        m.hausdorff_mm,
        m.hausdorff95_mm,
        m.assd_mm,
        m.surface_tolerance_mm,
        m.surface_dice,
        m.seg_surface_voxels,
        m.ref_surface_voxels,
        c.seg_components(),
        c.ref_components()
    );
    println!(
        "every unit (label 1, foreground, components; {} rows): best of {repeats}: {:.1} ms",
        rows.len(),
        best_all * 1e3
    );
    println!("binary metrics of one mask pair (overlap + surface): best of {repeats}: {:.1} ms", best_binary * 1e3);
}

//! Preprocessing through the jobs: reorientation, resampling, padding and label
//! normalisation on the way in, undone on the segmentation written out.

use std::path::Path;

use niftyhost::io::{read_volume, write_labels};
use niftyhost_tests::{plugin_dir, repo_root, run, text, tissue_config, workspace_plugin};

fn train_and_segment(dir: &Path, config: &Path) {
    for job in ["train", "inference"] {
        let out = run(dir, &[job, "-c", config.to_str().unwrap()]);
        assert!(out.status.success(), "{job}: {}", text(&out).1);
    }
}

#[test]
fn outputs_come_back_in_the_input_geometry_after_reorienting_resampling_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "toynet",
        "spatial_window_size = [16, 16, 16]\nvolume_padding_size = [2, 3, 4]\nvolume_padding_mode = \"edge\"\n\
         [training]\nmax_iter = 3\n[inference]\nspatial_window_size = [24, 24, 24]\nborder = [4, 4, 4]",
    );
    // Both sections reoriented to LPS and resampled to 3 mm.
    let text_config = std::fs::read_to_string(&config).unwrap().replace(
        "filename_contains = [\"tissue_\"]",
        "filename_contains = [\"tissue_\"]\npixdim = [3.0, 3.0, 3.0]\naxcodes = \"LPS\"",
    );
    let text_config = text_config.replace(
        "filename_contains = [\"t1_\"]",
        "filename_contains = [\"t1_\"]\npixdim = [3.0, 3.0, 3.0]\naxcodes = \"LPS\"",
    );
    std::fs::write(&config, text_config).unwrap();
    train_and_segment(dir.path(), &config);
    let input = read_volume(&repo_root().join("data/mni152/t1_2mm.nii.gz")).unwrap();
    let seg = read_volume(&dir.path().join("model/inference/2mm_seg.nii.gz")).unwrap();
    assert_eq!(seg.dims, input.dims);
    assert_eq!(seg.affine, input.affine);
    assert!(seg.data.iter().all(|&v| v == 0.0 || v == 1.0 || v == 2.0));
}

#[test]
fn arbitrary_label_values_are_learned_mapped_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugin_dir(d, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    // The 2 mm tissue labels 0/1/2 stored as 0/40/200.
    let tissue = read_volume(&repo_root().join("data/mni152/tissue_2mm.nii.gz")).unwrap();
    let values: Vec<u8> = tissue.data.iter().map(|&v| [0u8, 40, 200][v as usize]).collect();
    std::fs::create_dir_all(d.join("labels")).unwrap();
    write_labels(&d.join("labels/tissue_2mm.nii.gz"), &tissue.header, tissue.dims, &values).unwrap();
    let config = tissue_config(d, "toynet", "spatial_window_size = [16, 16, 16]\n[training]\nmax_iter = 3");
    let text_config = std::fs::read_to_string(&config).unwrap();
    let label_dir = d.join("labels");
    let text_config = text_config
        .replacen(
            &format!(
                "path_to_search = \"{}\"\nfilename_contains = [\"tissue_\"]",
                repo_root().join("data/mni152").display()
            ),
            &format!("path_to_search = \"{}\"\nfilename_contains = [\"tissue_\"]", label_dir.display()),
            1,
        )
        .replace("num_classes = 3", "num_classes = 3\nlabel_normalisation = true");
    std::fs::write(&config, text_config).unwrap();
    train_and_segment(d, &config);
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model/label_map.json")).unwrap()).unwrap();
    assert_eq!(map["values"], serde_json::json!([0, 40, 200]), "{map}");
    let seg = read_volume(&d.join("model/inference/2mm_seg.nii.gz")).unwrap();
    assert!(seg.data.iter().all(|&v| v == 0.0 || v == 40.0 || v == 200.0), "outputs use the input's label values");
    assert!(seg.data.iter().any(|&v| v != 0.0));
}

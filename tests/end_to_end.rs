//! Train → inference → evaluation on the bundled 2 mm MNI152 tissue task, through the
//! CLI, as a user runs it.

use niftyhost::io::read_volume;
use niftyhost_tests::{niftyhost_bin, plugin_dir, repo_root, run, text, tissue_config, workspace_plugin};

#[test]
fn unet3d_trains_segments_in_the_input_geometry_and_reaches_a_real_dice() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("unet3d"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "unet3d",
        "batch_size = 2\nspatial_window_size = [32, 32, 32]\n\
         [network.params]\nbase_channels = 8\ndepth = 3\n\
         [training]\nloss = \"dice_ce\"\nlr = 0.003\nmax_iter = 150\nsave_every_n = 50\n\
         [inference]\nspatial_window_size = [64, 64, 64]\noverlap = 0.25",
    );
    let c = config.to_str().unwrap();
    for job in ["train", "inference", "evaluation"] {
        let out = run(dir.path(), &[job, "-c", c]);
        assert!(out.status.success(), "{job} failed:\n{}", text(&out).1);
    }

    // The segmentation has the input's shape and geometry.
    let input = read_volume(&repo_root().join("data/mni152/t1_2mm.nii.gz")).unwrap();
    let seg = read_volume(&dir.path().join("model/inference/2mm_seg.nii.gz")).unwrap();
    assert_eq!(seg.dims, [99, 117, 95]);
    assert_eq!(seg.dims, input.dims);
    let (h, r) = (&seg.header, &input.header);
    assert_eq!((h.sform_code, h.qform_code), (r.sform_code, r.qform_code));
    assert_eq!((h.srow_x, h.srow_y, h.srow_z), (r.srow_x, r.srow_y, r.srow_z));
    assert_eq!((h.quatern_b, h.quatern_c, h.quatern_d), (r.quatern_b, r.quatern_c, r.quatern_d));
    assert_eq!((h.qoffset_x, h.qoffset_y, h.qoffset_z), (r.qoffset_x, r.qoffset_y, r.qoffset_z));
    assert_eq!(h.pixdim[1..4], r.pixdim[1..4]);
    assert_eq!(seg.affine, input.affine);
    assert_eq!(h.datatype, 2, "labels are stored as uint8");
    assert!(seg.data.iter().all(|&v| v == 0.0 || v == 1.0 || v == 2.0));

    // With memory for fewer windows than 4 per batch on each worker, fewer run at once
    // (said in a warning) and the segmentation is the same. 24 MB: the largest volume
    // buffer fits; eight 64³ windows, each at least twice its 3-class float output, do not.
    let out = std::process::Command::new(niftyhost_bin())
        .args(["inference", "-c", c, "--set", "inference.output_dir=\"tight\""])
        .current_dir(dir.path())
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("NIFTYHOST_MEMORY_BUDGET", "24M")
        .output()
        .unwrap();
    let stderr = text(&out).1;
    assert!(out.status.success(), "inference under a 24 MB budget failed:\n{stderr}");
    assert!(stderr.contains("fewer inference windows at once"), "{stderr}");
    assert!(stderr.contains("to_batch=1"), "{stderr}");
    let tight = read_volume(&dir.path().join("tight/2mm_seg.nii.gz")).unwrap();
    assert!(tight.data == seg.data, "one window at a time segments differently");

    // Evaluation: per-label Dice in the CSV; grey and white matter are really learned.
    // The label unit's rows (column 11, `unit`); foreground and component rows follow.
    let csv = std::fs::read_to_string(dir.path().join("model/evaluation/metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("subject,label,dice,jaccard,tp,fp,fn,tn,ref_voxels,seg_voxels,unit,"));
    let label_rows: Vec<&str> = lines.filter(|l| l.split(',').nth(10) == Some("label")).collect();
    let dice: Vec<(String, f64)> = label_rows
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(dice.len(), 3);
    let reference_voxels: Vec<&str> = label_rows.iter().map(|l| l.split(',').nth(8).unwrap()).collect();
    assert_eq!(reference_voxels, ["884727", "136200", "79458"], "voxel counts of tissue_2mm");
    eprintln!("Dice after 150 iterations: {dice:?}");
    assert!(dice[0].1 > 0.95, "background {dice:?}");
    assert!(dice[1].1 > 0.75, "grey matter {dice:?}");
    assert!(dice[2].1 > 0.75, "white matter {dice:?}");
}

/// Three subjects of the cohort (tests/data/cohort), each in its own axis order and voxel
/// size, two modalities: the held-out subject is segmented on its own grid, and only it
/// is scored, as INFER.
#[test]
fn cohort_subjects_in_other_orientations_are_segmented_on_their_own_grids_and_scored_held_out() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let data = repo_root().join("tests/data/cohort");
    let section = |name: &str| {
        format!(
            "[input.{name}]\npath_to_search = \"{}\"\nfilename_contains = [\"_{name}\"]\naxcodes = \"RAS\"\npixdim = [4.0, 4.0, 4.0]\n",
            data.display()
        )
    };
    let config = dir.path().join("cohort.toml");
    let toml = format!(
        "[system]\nseed = 5\nmodel_dir = \"{model}\"\n\n{t1}\n{t2}\n{label}\n\
         [segmentation]\nimage = [\"t1\", \"t2\"]\nlabel = \"label\"\nnum_classes = 3\n\n\
         [network]\nname = \"toynet\"\nbatch_size = 2\nspatial_window_size = [16, 16, 16]\n\n\
         [training]\nmax_iter = 3\nsave_every_n = 3\n\n[inference]\nspatial_window_size = [32, 32, 32]\n",
        model = dir.path().join("model").display(),
        t1 = section("t1"),
        t2 = section("t2"),
        label = section("label"),
    );
    std::fs::write(&config, toml).unwrap();
    // sub05 (ASR, 2 mm) is held out; sub00 (RPI, 2.2 mm) and sub06 (LPS, 2.2 mm) train.
    std::fs::create_dir_all(dir.path().join("model")).unwrap();
    std::fs::write(
        dir.path().join("model/dataset_split.csv"),
        "subject_id,phase,fold\nsub00,TRAIN,\nsub05,INFER,\nsub06,TRAIN,\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    for job in ["train", "inference", "evaluation"] {
        let out = run(dir.path(), &[job, "-c", c]);
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{job} failed:\n{stderr}");
        assert!(!stderr.contains("falling back") && !stderr.contains("no split file"), "{job}:\n{stderr}");
    }
    let outputs: Vec<String> = std::fs::read_dir(dir.path().join("model/inference"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outputs, ["sub05_seg.nii.gz"], "only the INFER subject is segmented");
    let input = read_volume(&data.join("sub05_t1.nii.gz")).unwrap();
    let seg = read_volume(&dir.path().join("model/inference/sub05_seg.nii.gz")).unwrap();
    assert_eq!((seg.dims, input.dims), ([117, 95, 99], [117, 95, 99]));
    assert_eq!(seg.affine, input.affine, "written in the input's own (ASR, 2 mm) geometry");
    assert_eq!(seg.axcodes(), "ASR");
    let csv = std::fs::read_to_string(dir.path().join("model/evaluation/metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.starts_with("sub05,") && r.ends_with(",INFER")), "{csv}");
}

use super::*;

/// A value for every row of the table, as a NiftyNet file would write it, and the
/// outcome kind it must get: `s` set, `k` kept, `r` refused.
const SAMPLES: &[(&str, &str, &str, char)] = &[
    ("system", "cuda_devices", "1, 2", 's'),
    ("system", "num_threads", "3", 's'),
    ("system", "num_gpus", "1", 'k'),
    ("system", "model_dir", "./models/m", 's'),
    ("system", "dataset_split_file", "split.csv", 's'),
    ("system", "event_handler", "model_saver, model_restorer, sampler_threading, apply_gradients, output_interpreter, console_logger, tensorboard_logger", 'k'),
    ("system", "iteration_generator", "iteration_generator", 'k'),
    ("network", "name", "niftynet.network.highres3dnet.HighRes3DNet", 's'),
    ("network", "activation_function", "leakyrelu", 's'),
    ("network", "batch_size", "4", 's'),
    ("network", "smaller_final_batch_mode", "pad", 'k'),
    ("network", "decay", "1e-5", 's'),
    ("network", "reg_type", "L1", 's'),
    ("network", "volume_padding_size", "21", 's'),
    ("network", "volume_padding_mode", "symmetric", 's'),
    ("network", "volume_padding_to_size", "0", 'k'),
    ("network", "window_sampling", "balanced", 's'),
    ("network", "force_output_identity_resizing", "False", 'k'),
    ("network", "queue_length", "20", 's'),
    ("network", "multimod_foreground_type", "or", 's'),
    ("network", "histogram_ref_file", "./hist.txt", 's'),
    ("network", "norm_type", "quartile", 's'),
    ("network", "cutoff", "(0.05, 0.95)", 's'),
    ("network", "foreground_type", "thresh_minus", 's'),
    ("network", "normalisation", "True", 's'),
    ("network", "rgb_normalisation", "False", 'k'),
    ("network", "whitening", "True", 's'),
    ("network", "normalise_foreground_only", "True", 's'),
    ("network", "weight_initializer", "he_normal", 'k'),
    ("network", "bias_initializer", "zeros", 'k'),
    ("network", "weight_initializer_args", "{}", 'k'),
    ("network", "bias_initializer_args", "{}", 'k'),
    ("network", "keep_prob", "0.5", 'r'),
    ("training", "optimiser", "gradientdescent", 's'),
    ("training", "sample_per_volume", "32", 's'),
    ("training", "rotation_angle", "(-10.0, 10.0)", 's'),
    ("training", "rotation_angle_x", "(-5, 5)", 's'),
    ("training", "rotation_angle_y", "(-5, 5)", 's'),
    ("training", "rotation_angle_z", "(-5, 5)", 's'),
    ("training", "scaling_percentage", "(-10.0, 10.0)", 's'),
    ("training", "isotropic_scaling", "True", 's'),
    ("training", "antialiasing", "True", 'r'),
    ("training", "bias_field_range", "(-0.5, 0.5)", 's'),
    ("training", "bf_order", "3", 's'),
    ("training", "random_flipping_axes", "0, 1", 's'),
    ("training", "do_elastic_deformation", "False", 's'),
    ("training", "num_ctrl_points", "4", 's'),
    ("training", "deformation_sigma", "15", 's'),
    ("training", "proportion_to_deform", "0.5", 's'),
    ("training", "lr", "0.0001", 's'),
    ("training", "loss_type", "DicePlusXEnt", 's'),
    ("training", "starting_iter", "0", 's'),
    ("training", "save_every_n", "0", 's'),
    ("training", "tensorboard_every_n", "20", 's'),
    ("training", "max_iter", "6", 's'),
    ("training", "max_checkpoints", "20", 's'),
    ("training", "validation_every_n", "-1", 's'),
    ("training", "validation_max_iter", "1", 's'),
    ("training", "exclude_fraction_for_validation", "0.1", 's'),
    ("training", "exclude_fraction_for_inference", "0.1", 's'),
    ("training", "vars_to_restore", "", 'k'),
    ("training", "vars_to_freeze", "conv_0.*", 's'),
    ("training", "patience", "100", 's'),
    ("training", "early_stopping_mode", "mean", 's'),
    ("inference", "spatial_window_size", "(64, 64)", 's'),
    ("inference", "inference_iter", "-1", 's'),
    ("inference", "dataset_to_infer", "Training", 'r'),
    ("inference", "save_seg_dir", "./output/seg", 's'),
    ("inference", "output_postfix", "_niftynet_out", 's'),
    ("inference", "output_interp_order", "0", 's'),
    ("inference", "border", "(5, 5, 5)", 's'),
    ("inference", "fill_constant", "0.0", 'k'),
    ("evaluation", "evaluations", "dice, jaccard, n_pos_ref, hausdorff95_distance", 'k'),
    ("evaluation", "save_csv_dir", "eval", 's'),
    ("segmentation", "image", "T1, FLAIR", 's'),
    ("segmentation", "label", "Lesion", 's'),
    ("segmentation", "weight", "", 'k'),
    ("segmentation", "sampler", "Lesion", 's'),
    ("segmentation", "inferred", "inferred", 's'),
    ("segmentation", "num_classes", "2", 's'),
    ("segmentation", "output_prob", "False", 's'),
    ("segmentation", "label_normalisation", "True", 's'),
    ("segmentation", "softmax", "True", 'k'),
    ("segmentation", "min_sampling_ratio", "0.00001", 'k'),
    ("segmentation", "compulsory_labels", "(0, 1)", 'k'),
    ("segmentation", "rand_samples", "0", 'k'),
    ("segmentation", "min_numb_labels", "1", 'k'),
    ("segmentation", "proba_connect", "True", 'k'),
    ("segmentation", "evaluation_units", "foreground", 's'),
    ("segmentation", "do_mixup", "True", 'r'),
    ("segmentation", "mixup_alpha", "0.2", 'r'),
    ("segmentation", "mix_match", "False", 'r'),
    ("input", "csv_file", "", 'k'),
    ("input", "csv_data_file", "data.csv", 'r'),
    ("input", "to_ohe", "False", 'k'),
    ("input", "path_to_search", "./data", 's'),
    ("input", "filename_contains", "T1, subject", 's'),
    ("input", "filename_not_contains", "T1c", 's'),
    ("input", "filename_removefromid", "_T1$", 'r'),
    ("input", "interp_order", "3", 's'),
    ("input", "loader", "opencv", 'r'),
    ("input", "pixdim", "(1.0, 1.0, 1.0)", 's'),
    ("input", "application_type", "segmentation", 'r'),
    ("input", "axcodes", "(A, R, S)", 's'),
    ("input", "spatial_window_size", "(32, 32, 32)", 's'),
];

/// An INI text with one `[SECTION]` per fixed section and the input section `T1`.
fn ini_of(rows: &[(&str, &str, &str, char)]) -> Vec<IniEntry> {
    rows.iter()
        .enumerate()
        .map(|(n, (section, key, raw, _))| IniEntry {
            line: n + 1,
            section: if *section == "input" { "T1".to_owned() } else { section.to_ascii_uppercase() },
            key: (*key).to_owned(),
            raw: (*raw).to_owned(),
        })
        .collect()
}

fn explain(entries: &[IniEntry]) -> Vec<Explained> {
    translate(entries, |_, _| Ok(()))
}

fn outcome<'a>(explained: &'a [Explained], section: &str, key: &str) -> &'a Outcome {
    &explained.iter().find(|e| e.section.eq_ignore_ascii_case(section) && e.key == key).expect(key).outcome
}

fn set_keys(o: &Outcome) -> Vec<(String, String)> {
    match o {
        Outcome::Set { keys } => keys.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        other => panic!("not set: {other:?}"),
    }
}

#[test]
fn every_row_has_a_sample_and_gets_its_outcome() {
    for row in NIFTYNET_KEYS {
        assert!(
            SAMPLES.iter().any(|(s, k, _, _)| *s == row.section && *k == row.key),
            "no sample for [{}] {}",
            row.section,
            row.key
        );
        let twice = NIFTYNET_KEYS.iter().filter(|r| r.section == row.section && r.key == row.key).count();
        assert_eq!(twice, 1, "[{}] {} listed twice", row.section, row.key);
    }
    let explained = explain(&ini_of(SAMPLES));
    for ((section, key, raw, kind), e) in SAMPLES.iter().zip(&explained) {
        let got = match &e.outcome {
            Outcome::Set { .. } => 's',
            Outcome::Kept { .. } => 'k',
            Outcome::Refused { .. } => 'r',
            other => panic!("[{section}] {key} = {raw}: {other:?}"),
        };
        assert_eq!(got, *kind, "[{section}] {key} = {raw}: {:?}", e.outcome);
        // Every line of --explain names the key and the outcome.
        let line = e.to_string();
        assert!(line.contains(&format!("] {key} = ")) && line.contains("-> "), "{line}");
    }
}

#[test]
fn same_rows_name_existing_niftyhost_keys() {
    for row in NIFTYNET_KEYS {
        if let Rule::Same(to) = row.rule {
            let known = if row.section == "input" {
                INPUT_KEYS.iter().any(|k| k.key == to)
            } else {
                KEYS.iter().any(|k| k.key == to)
            };
            assert!(known, "[{}] {} -> {to} is not a niftyhost key", row.section, row.key);
        }
        assert!(!row.rule.describe().is_empty());
    }
}

#[test]
fn translations_of_the_specification_examples() {
    let e = explain(&ini_of(SAMPLES));
    let pairs = |section, key| set_keys(outcome(&e, section, key));
    let one = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let gpus =
        |k: &str, v: &str| vec![(k.to_owned(), v.to_owned()), ("system.cpu_fallback".to_owned(), "true".to_owned())];
    assert_eq!(pairs("system", "cuda_devices"), gpus("system.devices", "[\"cuda:1\"]"), "num_gpus = 1 of 1, 2");
    assert_eq!(pairs("system", "num_threads"), one("system.loader_threads", "3"));
    assert_eq!(pairs("system", "dataset_split_file"), one("system.dataset_split_file", "\"./models/m/split.csv\""));
    assert_eq!(
        pairs("network", "name"),
        vec![("network.name".to_owned(), "\"highres3dnet\"".to_owned())],
        "module path"
    );
    assert_eq!(pairs("network", "activation_function"), one("network.params.activation", "\"leaky_relu\""));
    assert_eq!(pairs("network", "decay"), one("training.weight_decay", "0.00001"));
    assert_eq!(pairs("network", "reg_type"), one("training.weight_decay_norm", "\"l1\""));
    assert_eq!(pairs("network", "volume_padding_size"), one("network.volume_padding_size", "[21, 21, 21]"));
    assert_eq!(pairs("network", "queue_length"), one("training.queue_length", "5"), "20 windows / batch 4");
    // NiftyNet's grid sampler batches inference windows by [NETWORK] batch_size too.
    let batch =
        vec![("network.batch_size".to_owned(), "4".to_owned()), ("inference.batch_size".to_owned(), "4".to_owned())];
    assert_eq!(pairs("network", "batch_size"), batch);
    assert_eq!(pairs("network", "multimod_foreground_type"), one("network.multimod_foreground_type", "\"or\""));
    assert_eq!(
        pairs("network", "foreground_type"),
        vec![
            ("network.foreground_type".to_owned(), "\"threshold_minus\"".to_owned()),
            ("network.foreground_threshold".to_owned(), "0.0".to_owned())
        ]
    );
    assert_eq!(pairs("network", "cutoff"), one("network.cutoff", "[0.05, 0.95]"));
    assert_eq!(pairs("training", "optimiser"), one("training.optimiser", "\"sgd\""));
    assert_eq!(pairs("training", "loss_type"), one("training.loss", "\"dice_ce\""));
    assert_eq!(pairs("training", "save_every_n"), one("training.save_every_n", &i64::MAX.to_string()));
    assert_eq!(pairs("training", "validation_every_n"), one("training.validation_every_n", "0"));
    assert_eq!(pairs("inference", "spatial_window_size"), one("inference.spatial_window_size", "[64, 64, 1]"));
    assert_eq!(pairs("inference", "save_seg_dir"), one("inference.output_dir", "\"./models/m/./output/seg\""));
    // The 2-D window (64, 64) is one voxel thick: a border of 5 is clamped to 0 there.
    assert_eq!(pairs("inference", "border"), one("inference.border", "[5, 5, 0]"));
    assert_eq!(pairs("evaluation", "save_csv_dir"), one("evaluation.output_csv", "\"./models/m/eval/metrics.csv\""));
    assert_eq!(pairs("segmentation", "image"), one("segmentation.image", "[\"t1\", \"flair\"]"));
    assert_eq!(pairs("segmentation", "label"), one("segmentation.label", "\"lesion\""));
    assert_eq!(pairs("segmentation", "output_prob"), one("inference.output_prob", "false"));
    assert_eq!(pairs("segmentation", "evaluation_units"), one("evaluation.evaluation_units", "[\"foreground\"]"));
    assert_eq!(pairs("T1", "axcodes"), one("input.t1.axcodes", "\"ARS\""));
    assert_eq!(pairs("T1", "interp_order"), one("input.t1.interp_order", "3"));
    assert_eq!(pairs("T1", "filename_contains"), one("input.t1.filename_contains", "[\"T1\", \"subject\"]"));
    assert_eq!(pairs("T1", "spatial_window_size"), one("network.spatial_window_size", "[32, 32, 32]"));
}

#[test]
fn loss_names_map_to_seglosses_or_are_refused() {
    let loss = |name: &str| {
        let entries = [IniEntry { line: 1, section: "TRAINING".into(), key: "loss_type".into(), raw: name.into() }];
        explain(&entries).remove(0).outcome
    };
    for (name, want) in [
        ("Dice", "dice_squared"),
        ("Dice_NS", "dice"),
        ("GDSC", "generalised_dice"),
        ("CrossEntropy", "cross_entropy"),
        ("Tversky", "tversky"),
        ("SensSpec", "sensitivity_specificity"),
        ("WGDL", "generalised_wasserstein_dice"),
        ("focal", "focal"),
    ] {
        assert_eq!(set_keys(&loss(name)), vec![("training.loss".to_owned(), format!("\"{want}\""))], "{name}");
    }
    for name in ["VolEnforcement", "L2Loss", "Huber"] {
        assert!(matches!(loss(name), Outcome::Refused { .. }), "{name}");
    }
}

#[test]
fn label_windows_follow_the_image_window() {
    let rows = |label_window: &'static str| {
        vec![
            ("segmentation", "image", "T1", 's'),
            ("segmentation", "label", "lab", 's'),
            ("input", "spatial_window_size", "(32, 32, 32)", 's'),
            ("lab", "spatial_window_size", label_window, 's'),
        ]
    };
    let entries = |label_window| {
        let mut e = ini_of(&rows(label_window));
        e[3].section = "lab".into();
        e
    };
    let same = explain(&entries("32, 32, 32"));
    assert!(matches!(outcome(&same, "lab", "spatial_window_size"), Outcome::Kept { .. }));
    let bigger = explain(&entries("40, 32, 32"));
    assert!(matches!(outcome(&bigger, "lab", "spatial_window_size"), Outcome::Invalid { .. }));
    let smaller = explain(&entries("26, 26, 26"));
    let got = outcome(&smaller, "lab", "spatial_window_size");
    if KEYS.iter().any(|k| k.key == "network.label_size") {
        assert_eq!(set_keys(got), vec![("network.label_size".to_owned(), "[26, 26, 26]".to_owned())]);
    } else {
        assert!(matches!(got, Outcome::Refused { reason } if reason.contains("network.label_size")), "{got:?}");
    }
}

#[test]
fn unknown_misplaced_and_other_application_keys() {
    let entries = [
        IniEntry { line: 1, section: "NETWORK".into(), key: "batch_sise".into(), raw: "2".into() },
        IniEntry { line: 2, section: "TRAINING".into(), key: "window_sampling".into(), raw: "uniform".into() },
        IniEntry { line: 3, section: "GAN".into(), key: "noise_size".into(), raw: "100".into() },
        IniEntry { line: 4, section: "T1".into(), key: "filename_contain".into(), raw: "T1".into() },
        IniEntry { line: 5, section: "NETWORK".into(), key: "foreground_oversample".into(), raw: "0.5".into() },
        IniEntry { line: 6, section: "EVALUATION".into(), key: "evaluations".into(), raw: "dice, jacard".into() },
        IniEntry { line: 7, section: "T1".into(), key: "csv_file".into(), raw: "".into() },
    ];
    let e = explain(&entries);
    assert_eq!(e[0].outcome, Outcome::Unknown { nearest: Some("batch_size".into()) });
    assert!(e[0].to_string().contains("did you mean `batch_size`?"), "{}", e[0]);
    assert!(matches!(&e[1].outcome, Outcome::Refused { reason } if reason.contains("[NETWORK] key")), "{:?}", e[1]);
    assert!(matches!(&e[2].outcome, Outcome::Refused { reason } if reason.contains("GAN")), "{:?}", e[2]);
    assert_eq!(e[3].outcome, Outcome::Unknown { nearest: Some("filename_contains".into()) });
    assert_eq!(set_keys(&e[4].outcome), vec![("network.foreground_oversample".to_owned(), "0.5".to_owned())]);
    assert!(matches!(&e[5].outcome, Outcome::Invalid { message } if message.contains("did you mean `jaccard`")));
    assert!(matches!(&e[6].outcome, Outcome::Kept { .. }), "empty value");
}

#[test]
fn niftyhost_checks_the_translated_values() {
    let entries =
        [IniEntry { line: 9, section: "NETWORK".into(), key: "foreground_type".into(), raw: "otsu_pluss".into() }];
    let e = translate(&entries, |k, v| Err(format!("`{k}` refuses {v}")));
    assert_eq!(e[0].outcome, Outcome::Invalid { message: "`network.foreground_type` refuses \"otsu_pluss\"".into() });
}

/// `[section] key = raw` on `line`.
fn entry(line: usize, section: &str, key: &str, raw: &str) -> IniEntry {
    IniEntry { line, section: section.into(), key: key.into(), raw: raw.into() }
}

#[test]
fn what_niftynets_own_example_files_write() {
    let entries = [
        entry(1, "SYSTEM", "queue_length", "20"),
        entry(2, "NETWORK", "batch_size", "4"),
        entry(3, "NETWORK", "name", "toynet"),
        entry(4, "NETWORK", "activation_function", "prelu"),
        entry(5, "T1", "filename_contains", "003"),
        entry(6, "T1", "filename_not_contains", "01, 0.5"),
        entry(7, "T1", "csv_file", "007"),
        entry(8, "SEGMENTATION", "label", "lab"),
        entry(9, "lab", "spatial_window_size", "(64, 64, 64)"),
        entry(10, "NETWORK", "activation_function", "dropout"),
    ];
    let e = explain(&entries);
    // default_segmentation.ini's [SYSTEM] queue_length is read as [NETWORK]'s, and says so.
    assert_eq!(set_keys(&e[0].outcome), vec![("training.queue_length".to_owned(), "5".to_owned())]);
    assert!(e[0].to_string().contains("read as [NETWORK] queue_length"), "{}", e[0]);
    assert!(e[1].note.is_none());
    // toynet takes NiftyNet's activations.
    assert_eq!(set_keys(&e[3].outcome), vec![("network.params.activation".to_owned(), "\"prelu\"".to_owned())]);
    assert!(matches!(&e[9].outcome, Outcome::Refused { reason } if reason.contains("dropout")), "{:?}", e[9]);
    // Names keep their text.
    assert_eq!(set_keys(&e[4].outcome), vec![("input.t1.filename_contains".to_owned(), "[\"003\"]".to_owned())]);
    assert_eq!(
        set_keys(&e[5].outcome),
        vec![("input.t1.filename_not_contains".to_owned(), "[\"01\", \"0.5\"]".to_owned())]
    );
    assert_eq!(set_keys(&e[6].outcome), vec![("input.t1.csv_file".to_owned(), "\"007\"".to_owned())]);
    // NiftyNet's 0 is the full length.
    let zero = [entry(1, "INFERENCE", "spatial_window_size", "(0, 0, 3)")];
    assert_eq!(
        set_keys(&explain(&zero)[0].outcome),
        vec![("inference.spatial_window_size".to_owned(), "[0, 0, 3]".to_owned())]
    );
    let bad =
        [entry(1, "INFERENCE", "spatial_window_size", "(a, 3)"), entry(2, "T1", "spatial_window_size", "(0, 0, 3)")];
    assert!(explain(&bad).iter().all(|e| matches!(e.outcome, Outcome::Invalid { .. })), "{:?}", explain(&bad));
    // highres3dnet_config.ini's border (5, 5, 5) with the window (0, 0, 3): clamped on k.
    let border =
        [entry(1, "INFERENCE", "spatial_window_size", "(0, 0, 3)"), entry(2, "INFERENCE", "border", "(5, 5, 5)")];
    let e_border = explain(&border);
    assert_eq!(set_keys(&e_border[1].outcome), vec![("inference.border".to_owned(), "[5, 5, 1]".to_owned())]);
    assert!(e_border[1].to_string().contains("axis 2: 5 -> 1 (window 3)"), "{}", e_border[1]);
    assert!(explain(&border[1..])[1..].is_empty() && explain(&border[1..])[0].note.is_none());
    // unet_config.ini's nonewnet: dynunet with no-new-Net's levels and widths.
    let nnn = explain(&[entry(1, "NETWORK", "name", "nonewnet")]);
    let keys = set_keys(&nnn[0].outcome);
    assert_eq!(keys[0], ("network.name".to_owned(), "\"dynunet\"".to_owned()));
    assert!(keys.contains(&("network.params.base_channels".to_owned(), "30".to_owned())), "{keys:?}");
    assert!(keys.contains(&("network.params.max_channels".to_owned(), "480".to_owned())), "{keys:?}");
    assert!(nnn[0].to_string().contains("linear resizing"), "{}", nnn[0]);
    // holisticnet_config.ini's network is refused by name, not left to fail at training.
    let holistic = explain(&[entry(1, "NETWORK", "name", "holisticnet")]);
    assert!(matches!(&holistic[0].outcome, Outcome::Refused { reason } if reason.contains("HolisticNet")));
    // ... with the networks that are there.
    assert!(holistic[0].to_string().contains("niftyhost has: toynet, highres3dnet,"), "{}", holistic[0]);
    // A label window with no image window (an evaluation file) is the window.
    assert_eq!(set_keys(&e[8].outcome), vec![("network.spatial_window_size".to_owned(), "[64, 64, 64]".to_owned())]);
}

/// deepmedic_config.ini's windows: image (57, 57, 57), label (9, 9, 9).
fn valid_network_file(name: &str, label: &str) -> Vec<IniEntry> {
    vec![
        entry(1, "T1", "spatial_window_size", "(57, 57, 57)"),
        entry(2, "parcellation", "spatial_window_size", label),
        entry(3, "NETWORK", "name", name),
        entry(4, "SEGMENTATION", "image", "T1"),
        entry(5, "SEGMENTATION", "label", "parcellation"),
    ]
}

#[test]
fn valid_networks_are_unpadded_where_the_label_window_is_smaller() {
    // NiftyNet's DeepMedic maps 57³ to its 9³ label window: unpadded, as NiftyNet computes it.
    let e = explain(&valid_network_file("deepmedic", "(9, 9, 9)"));
    assert_eq!(
        set_keys(&e[2].outcome),
        vec![
            ("network.name".to_owned(), "\"deepmedic\"".to_owned()),
            ("network.params.pad_input".to_owned(), "false".to_owned())
        ]
    );
    assert!(
        e[2].to_string().contains("label window [9, 9, 9] is smaller than the image window [57, 57, 57]"),
        "{}",
        e[2]
    );
    let unet_2d = explain(&valid_network_file("unet_2d", "(9, 9, 9)"));
    assert!(set_keys(&unet_2d[2].outcome).contains(&("network.params.pad_input".to_owned(), "false".to_owned())));
    // The same windows: padded (the network's default), so the output keeps the window.
    for (name, label) in [("deepmedic", "(57, 57, 57)"), ("highres3dnet", "(9, 9, 9)")] {
        let e = explain(&valid_network_file(name, label));
        assert_eq!(set_keys(&e[2].outcome).len(), 1, "{name} {label}: {:?}", e[2]);
        assert!(e[2].note.is_none(), "{:?}", e[2]);
    }
}

#[test]
fn niftynets_evaluation_file_translates_inferred_to_the_segmentation_section() {
    // NiftyNet's default_multimodal_segmentation_eval.ini, only its data paths changed.
    let text = include_str!("../../../../../tests/data/niftynet/default_multimodal_segmentation_eval.ini");
    let e = explain(&crate::config::ini::entries(text, "eval.ini").unwrap());
    let errors: Vec<String> = e.iter().filter(|k| k.outcome.is_error()).map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        set_keys(outcome(&e, "segmentation", "inferred")),
        vec![("evaluation.seg_section".to_owned(), "\"seg\"".to_owned())]
    );
    // `weight = T1` names no section of the file: NiftyNet's evaluation does not read it.
    assert!(
        matches!(outcome(&e, "segmentation", "weight"), Outcome::Kept { why } if why.contains("[T1]")),
        "{:?}",
        outcome(&e, "segmentation", "weight")
    );
    assert!(matches!(outcome(&e, "seg", "spatial_window_size"), Outcome::Kept { why } if why.contains("scored whole")));
    assert_eq!(
        set_keys(outcome(&e, "segmentation", "evaluation_units")),
        vec![("evaluation.evaluation_units".to_owned(), "[\"foreground\"]".to_owned())]
    );
    let evaluations = outcome(&e, "evaluation", "evaluations");
    assert!(
        matches!(evaluations, Outcome::Kept { why } if why.contains("positive_predictive_values -> ppv") && why.contains("n_pos_seg -> seg_voxels")),
        "{evaluations:?}"
    );
    assert_eq!(
        set_keys(outcome(&e, "evaluation", "save_csv_dir")),
        vec![(
            "evaluation.output_csv".to_owned(),
            "\"./models/model_multimodal_toy/./NiftyNetTestEval/metrics.csv\"".to_owned()
        )]
    );
    // A `weight` section the file defines, or a file that is not an evaluation file: translated.
    let defined = [
        entry(1, "SEGMENTATION", "inferred", "seg"),
        entry(2, "SEGMENTATION", "weight", "W"),
        entry(3, "W", "path_to_search", "w"),
    ];
    assert_eq!(set_keys(&explain(&defined)[1].outcome), vec![("segmentation.weight".to_owned(), "\"w\"".to_owned())]);
    let training = explain(&[entry(1, "SEGMENTATION", "weight", "T1")]);
    assert_eq!(set_keys(&training[0].outcome), vec![("segmentation.weight".to_owned(), "\"t1\"".to_owned())]);
    // One section of segmentations.
    let two = explain(&[entry(1, "SEGMENTATION", "inferred", "a, b")]);
    assert!(
        matches!(&two[0].outcome, Outcome::Invalid { message } if message.contains("one input section")),
        "{:?}",
        two[0]
    );
}

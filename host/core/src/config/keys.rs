//! Every configuration key with its default and a one-line doc: the single source of the
//! built-in defaults, of `niftyhost train -h` and of unknown-key suggestions.

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted path, `section.key`.
    pub key: &'static str,
    /// The default as a TOML literal.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

const fn k(key: &'static str, default: &'static str, doc: &'static str) -> KeySpec {
    KeySpec { key, default, doc }
}

/// Keys of the fixed sections. Free-form tables: `input.<name>` (keys [`INPUT_KEYS`]),
/// `network.params` and `training.loss_params` (checked against the plugins' schemas).
pub const KEYS: &[KeySpec] = &[
    k("system.seed", "1", "seed of every random draw (weights are the plugin's: seeded through libtorch)"),
    k("system.devices", "[\"cpu\"]", "devices to run on, one network replica each: \"cpu\", \"cuda:0\", ..."),
    k("system.num_gpus", "0", "train on cuda:0..cuda:n-1 (NiftyNet's num_gpus; 0 = use system.devices)"),
    k(
        "system.cpu_fallback",
        "false",
        "run on the CPU, with a warning, when the CUDA devices asked for are not there (NiftyNet's behaviour; its INI files turn it on)",
    ),
    k("system.model_dir", "\"runs/model\"", "folder for checkpoints, logs, inference and evaluation outputs"),
    k("system.loader_threads", "2", "threads that sample and batch windows"),
    k("system.torch_threads", "0", "libtorch intra-op threads (0 = libtorch's default)"),
    k(
        "system.dataset_split_file",
        "\"\"",
        "CSV subject_id,phase (TRAIN/VALID/INFER); made if missing (empty = <model_dir>/dataset_split.csv)",
    ),
    k("system.cache_mb", "2048", "memory budget of the loaders' volume cache, MiB"),
    k(
        "system.distributed",
        "\"auto\"",
        "gradient averaging across processes: auto (one process: in-process; GPUs: nccl; else mpi), in-process, mpi or nccl",
    ),
    k("system.comm_timeout_s", "300.0", "seconds a collective may wait for the other processes before the run ends"),
    k("system.bucket_mb", "25.0", "size of the gradient buckets all-reduced across processes, MiB"),
    k("segmentation.image", "[\"image\"]", "input sections stacked as image channels, in order"),
    k("segmentation.label", "\"label\"", "input section holding the labels (\"\" = images only: inference of new images)"),
    k("segmentation.num_classes", "2", "number of label classes (labels 0..num_classes-1)"),
    k(
        "segmentation.label_normalisation",
        "false",
        "map the label values found in TRAIN to 0..num_classes-1 (saved; inverted on outputs)",
    ),
    k("segmentation.sampler", "\"\"", "input section holding the window-centre weights of the weighted sampler"),
    k(
        "segmentation.weight",
        "\"\"",
        "input section holding voxel weight maps passed to the loss (NiftyNet's weight; empty = none)",
    ),
    k("network.name", "\"toynet\"", "network component (a plugin's network name)"),
    k("network.batch_size", "2", "windows per training step"),
    k("network.spatial_window_size", "[32, 32, 32]", "training window (i, j, k) in voxels"),
    k(
        "network.label_size",
        "[]",
        "label window (i, j, k): the loss sees only this centre of each training window, inference keeps only it (border (window - label)/2 per axis; NiftyNet's label spatial_window_size); empty = the whole window",
    ),
    k("network.whitening", "true", "z-score each image channel (mean 0, std 1)"),
    k(
        "network.normalise_foreground_only",
        "false",
        "whitening statistics from the foreground only (network.foreground_type)",
    ),
    k(
        "network.foreground_type",
        "\"otsu\"",
        "foreground rule: otsu, mean (above the mean), threshold (above network.foreground_threshold), otsu_minus or threshold_minus (below)",
    ),
    k(
        "network.multimod_foreground_type",
        "\"multi\"",
        "foreground of several image channels: multi (each its own mask), and (foreground in all), or (in any)",
    ),
    k("network.foreground_threshold", "0.0", "intensity threshold of foreground_type = \"threshold\""),
    k("network.normalisation", "false", "Nyúl histogram standardisation, learned on TRAIN subjects (TRAIN and VALID with k_folds >= 2)"),
    k(
        "network.histogram_ref_file",
        "\"\"",
        "histogram landmarks file (empty = <model_dir>/histogram.json); learned if missing; a .txt file is in NiftyNet's text format (one line per image section: name, landmarks)",
    ),
    k("network.norm_type", "\"percentile\"", "histogram landmarks: percentile (deciles) or quartile"),
    k("network.cutoff", "[0.01, 0.99]", "histogram cut-off percentiles (fractions)"),
    k("network.volume_padding_size", "[0, 0, 0]", "voxels added on each side of every volume (i, j, k)"),
    k(
        "network.volume_padding_mode",
        "\"minimum\"",
        "padding of images: minimum, constant (0), edge, symmetric or reflect",
    ),
    k("network.window_sampling", "\"uniform\"", "training windows: uniform, weighted, balanced, resize or foreground"),
    k(
        "network.foreground_oversample",
        "0.33",
        "window_sampling = \"foreground\": share of each batch centred on a labelled voxel, in [0, 1] (nnU-Net)",
    ),
    k("training.loss", "\"dice_ce\"", "loss component (a plugin's loss name)"),
    k("training.optimiser", "\"adam\"", "optimiser: sgd, momentum, nesterov, adam, adamw, adagrad or rmsprop"),
    k("training.lr", "0.001", "learning rate"),
    k("training.momentum", "0.9", "momentum coefficient of momentum and nesterov"),
    k("training.lr_schedule", "\"constant\"", "learning-rate decay after warm-up: constant, step, poly or cosine"),
    k("training.lr_step_size", "1000", "iterations between decays of the step schedule"),
    k("training.lr_gamma", "0.1", "factor per decay of the step schedule"),
    k("training.lr_power", "0.9", "exponent of the poly schedule"),
    k("training.warmup_iters", "0", "iterations of linear warm-up from 0 to training.lr"),
    k("training.clip_grad_norm", "0.0", "largest global gradient norm (0 = no clipping)"),
    k("training.weight_decay", "0.0", "weight decay (L2; decoupled for adamw)"),
    k("training.weight_decay_norm", "\"l2\"", "penalty of training.weight_decay: l2 (Σw²/2) or l1 (Σ|w|; not with adamw)"),
    k("training.max_iter", "100", "iterations to train"),
    k(
        "training.starting_iter",
        "0",
        "0: start fresh; -1: resume from the latest complete checkpoint; n: from checkpoint n",
    ),
    k("training.restore_from", "\"\"", "transfer learning: a .safetensors checkpoint to take weights from when starting at iteration 0"),
    k("training.vars_to_restore", "\"\"", "regex of the parameter names taken from training.restore_from (empty = every name)"),
    k("training.vars_to_freeze", "\"\"", "regex of the parameter names that are not trained (empty = none)"),
    k("training.save_every_n", "50", "save a checkpoint every n iterations (and at the end)"),
    k("training.max_checkpoints", "3", "checkpoints kept (the oldest are deleted)"),
    k("training.queue_length", "8", "batches prepared ahead by the loader threads"),
    k("training.sample_per_volume", "1", "consecutive windows drawn from one volume"),
    k(
        "training.exclude_fraction_for_validation",
        "0.0",
        "fraction of subjects set aside as VALID when the split file is made",
    ),
    k(
        "training.exclude_fraction_for_inference",
        "0.0",
        "fraction of subjects set aside as INFER when the split file is made",
    ),
    k("training.k_folds", "0", "k-fold cross-validation: VALID is fold `training.fold` of k, each fold's run in <model_dir>/fold_<k> (0 = off)"),
    k("training.fold", "0", "the validation fold (0..k_folds-1) when k_folds > 1 (`--fold`)"),
    k("training.log_every_n", "10", "log a line every n iterations"),
    k(
        "training.mixed_precision",
        "\"none\"",
        "autocast on CUDA devices: none, fp16 (with dynamic loss scaling) or bf16; CPU devices stay fp32",
    ),
    k(
        "training.tensorboard_every_n",
        "50",
        "TensorBoard events in <model_dir>/logs: scalars every iteration, slices of input, label and prediction every n iterations (0 = none)",
    ),
    k("training.validation_every_n", "0", "validate on the VALID subjects every n iterations (0 = never)"),
    k("training.validation_max_iter", "1", "validation batches (the same windows every time)"),
    k("training.patience", "0", "early stopping: validations looked back on (0 = never stop early)"),
    k("training.early_stopping_mode", "\"mean\"", "mean (newest loss above the mean of the previous `patience`) or validation_up (loss rose `patience` times in a row)"),
    k(
        "training.augmentation",
        "[]",
        "augmentation components applied in order to each training window: [[training.augmentation]] tables of name, probability (1.0), params",
    ),
    k(
        "training.augmentation_margin",
        "0.125",
        "augment a crop larger by this fraction of the window on each side, then keep the centre (avoids border fill)",
    ),
    k("training.random_flipping_axes", "[]", "NiftyNet: axes (0, 1, 2 = i, j, k) flipped with probability 0.5 each ([] or [-1] = none)"),
    k("training.rotation_angle", "[]", "NiftyNet: [lo, hi] degrees of rotation about each axis ([] = none)"),
    k("training.rotation_angle_x", "[]", "NiftyNet: [lo, hi] degrees about i (overrides rotation_angle)"),
    k("training.rotation_angle_y", "[]", "NiftyNet: [lo, hi] degrees about j (overrides rotation_angle)"),
    k("training.rotation_angle_z", "[]", "NiftyNet: [lo, hi] degrees about k (overrides rotation_angle)"),
    k("training.scaling_percentage", "[]", "NiftyNet: [lo, hi] percent of random scaling ([] = none)"),
    k("training.isotropic_scaling", "false", "NiftyNet: one scale for all axes"),
    k("training.do_elastic_deformation", "false", "NiftyNet: B-spline elastic deformation"),
    k("training.num_ctrl_points", "4", "NiftyNet: B-spline control points per axis (>= 4)"),
    k("training.deformation_sigma", "15.0", "NiftyNet: standard deviation of control-point displacements, mm"),
    k("training.proportion_to_deform", "0.5", "NiftyNet: fraction of windows deformed"),
    k("training.bias_field_range", "[]", "NiftyNet: [lo, hi] of the random bias field's coefficients ([] = none)"),
    k("training.bf_order", "3", "NiftyNet: polynomial order of the random bias field"),
    k("inference.inference_iter", "-1", "checkpoint to segment with (-1 = latest)"),
    k("inference.spatial_window_size", "[]", "inference window (i, j, k); empty = the training window; 0 = each volume's full extent on that axis (rounded up to the training window's power-of-two divisibility)"),
    k("inference.overlap", "0.25", "fraction of a window's kept region shared with its neighbour (0 <= overlap < 1)"),
    k(
        "inference.border",
        "[0, 0, 0]",
        "voxels dropped from each side of every output window (NiftyNet's border), (i, j, k)",
    ),
    k("inference.batch_size", "4", "windows per forward pass"),
    k(
        "inference.precision",
        "\"auto\"",
        "arithmetic of the forward passes: fp32, bf16, or auto (bf16 on a CPU with bf16 dot products, else fp32; a network that fails in bf16 falls back to fp32)",
    ),
    k(
        "inference.workers",
        "0",
        "batches run at once, each by its own copy of the network on its own thread (0 = one per core, at most 4, on a CPU; 1 on a GPU)",
    ),
    k(
        "inference.crop_to_foreground",
        "true",
        "run windows only over the bounding box of the voxels that differ from the first voxel (the background around a skull-stripped brain, say) and give the rest class 0 (labels and probabilities; logits run every window)",
    ),
    k("inference.foreground_margin", "0", "voxels added to each side of crop_to_foreground's bounding box"),
    k("inference.channels_last", "true", "on a CPU, store 5-D weights and inputs channels-last (faster oneDNN convolutions)"),
    k("inference.output_dir", "\"\"", "where segmentations go (empty = <model_dir>/inference; <model_dir>/fold_<k>/inference with k_folds >= 2)"),
    k("inference.output_postfix", "\"_seg\"", "appended to the subject id in output file names"),
    k("inference.blending", "\"constant\"", "weights of overlapping windows: constant (plain mean, NiftyNet) or gaussian (centres weigh most)"),
    k("inference.tta_mirror_axes", "[]", "test-time augmentation: average over every mirroring along these axes (0 = i, 1 = j, 2 = k)"),
    k("inference.checkpoints", "[]", "checkpoint .safetensors files to ensemble (empty = the one of inference_iter)"),
    k("inference.output_type", "\"labels\"", "what is written: labels (uint8), probabilities (4D, one volume per class) or logits (4D float32)"),
    k("inference.output_interp_order", "1", "labels back to the input grid: 1 = per-class probabilities resampled linearly, then arg-max; 0 = arg-max on the prepared grid, resampled by nearest neighbour (NiftyNet's output_interp_order; one byte per voxel instead of one per class)"),
    k("inference.output_prob", "false", "NiftyNet's switch: true writes probabilities (same as output_type = \"probabilities\")"),
    k("inference.probability_dtype", "\"float32\"", "probabilities as float32, or uint8 quantised (value/255, scl_slope 1/255)"),
    k("inference.remove_small_components", "[]", "labels whose connected components smaller than min_component_mm3 become background"),
    k("inference.min_component_mm3", "0.0", "smallest component volume kept by remove_small_components, mm³"),
    k("inference.keep_largest_component", "[]", "labels of which only the largest connected component is kept"),
    k("inference.fill_holes", "[]", "labels whose enclosed background holes are filled"),
    k("inference.connectivity", "26", "connectivity of postprocessing components: 6, 18 or 26"),
    k(
        "inference.shard",
        "\"\"",
        "segment shard \"i/n\" (0 <= i < n) of the subjects: sorted by id, every n-th from position i (empty = SLURM_ARRAY_TASK_ID of a job array, else all)",
    ),
    k("evaluation.seg_dir", "\"\"", "segmentations to evaluate (empty = inference.output_dir)"),
    k(
        "evaluation.ref_dir",
        "\"\"",
        "reference labels <id>.nii[.gz], paired by name with <seg_dir>/<id><inference.output_postfix>.nii[.gz] (empty = the dataset's labels)",
    ),
    k(
        "evaluation.seg_section",
        "\"\"",
        "an input section whose files are the segmentations to evaluate (NiftyNet's inferred), paired with the label section by subject id (empty = evaluation.seg_dir)",
    ),
    k(
        "evaluation.labels",
        "[]",
        "label values to score (empty = 0..num_classes, or every value found when evaluation.ref_dir is set)",
    ),
    k("evaluation.output_csv", "\"\"", "metrics CSV (empty = <model_dir>/evaluation/metrics.csv; under <model_dir>/fold_<k>/ with k_folds >= 2)"),
    k(
        "evaluation.evaluation_units",
        "[\"label\", \"foreground\", \"cc\"]",
        "units scored: label (each label), foreground (labels > 0 as one), cc (connected components)",
    ),
    k("evaluation.include_background", "true", "score label 0 too in the label unit"),
    k("evaluation.surface_tolerance_mm", "2.0", "tolerance of the normalised surface Dice, mm"),
    k("evaluation.connectivity", "26", "connected components: 6, 18 or 26 neighbours"),
    k(
        "evaluation.component_min_overlap",
        "0.0",
        "a component is detected when more than this fraction of it is overlapped (0 = any overlap)",
    ),
];

/// Keys of an `input.<name>` section (NiftyNet's modality sections).
pub const INPUT_KEYS: &[KeySpec] = &[
    k("path_to_search", "\"\"", "folders to search, comma-separated"),
    k("filename_contains", "[]", "substrings every file name must contain (removed to form the subject id)"),
    k("filename_not_contains", "[]", "substrings no file name may contain"),
    k("filename_removefromid", "\"\"", "substring also removed from the subject id"),
    k("csv_file", "\"\"", "CSV of subject_id,path (instead of searching folders)"),
    k("pixdim", "[]", "resample to this voxel size in mm (i, j, k); every section of a job must agree"),
    k("axcodes", "\"\"", "reorient to these axis codes, e.g. \"RAS\"; every section of a job must agree"),
    k(
        "interp_order",
        "-1",
        "resampling of an image section: 0 nearest, 1 linear, 3 cubic B-spline (-1 = linear; labels always nearest)",
    ),
    k(
        "inference_path_to_search",
        "\"\"",
        "folders searched by inference only, comma-separated: new subjects without labels (a Decathlon imagesTs)",
    ),
    k(
        "modality",
        "\"\"",
        "the section's imaging modality, e.g. \"CT\" (`niftyhost plan` normalises CT with fixed statistics)",
    ),
    k("intensity_clip", "[]", "[lo, hi]: clip this image section's intensities before normalisation ([] = none)"),
    k(
        "intensity_zscore",
        "[]",
        "[mean, std]: z-score this image section with these fixed statistics instead of whitening ([] = whitening)",
    ),
];

/// Tables whose keys belong to a plugin's schema.
pub const PLUGIN_TABLES: &[&str] = &["network.params", "training.loss_params"];

/// The command-line shortcuts of keys (the flags that set them besides `--set`), named
/// beside the key when its value is refused.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("network.batch_size", "--batch-size"),
    ("training.lr", "--lr"),
    ("training.max_iter", "--max-iter"),
    ("training.starting_iter", "--starting-iter"),
    ("training.fold", "--fold"),
    ("system.model_dir", "--model-dir"),
    ("system.seed", "--seed"),
    ("system.devices", "--devices"),
    ("inference.shard", "--shard"),
    ("inference.batch_size", "--batch-size"),
    ("evaluation.seg_dir", "--seg-dir"),
    ("evaluation.ref_dir", "--ref-dir"),
    ("evaluation.output_csv", "--out"),
];

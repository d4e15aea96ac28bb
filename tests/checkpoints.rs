//! Checkpoints: a save/load round trip, refusal of a checkpoint that does not fit, and
//! resuming a run from the latest complete checkpoint.

use niftyhost::config::{load, Overrides, Settings};
use niftyhost::data::ChannelLayout;
use niftyhost::engine::checkpoint::{self, CheckpointMeta};
use niftyhost::engine::Model;
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_tests::{logged_losses, plugin_dir, run, text, tissue_config, workspace_plugin};
use tch::{Device, Kind, Tensor};

/// One channel per image section: the tissue task's one 3D T1.
fn one_per_section(settings: &Settings) -> ChannelLayout {
    ChannelLayout::one_per_section(&settings.segmentation.image)
}

fn meta(iteration: u64) -> CheckpointMeta {
    CheckpointMeta {
        iteration,
        seed: 1,
        loss: 0.5,
        plugins: Vec::new(),
        torch_abi_tag: niftyhost_plugin_api::sdk::TORCH_ABI_TAG.to_owned(),
        config: serde_json::json!({}),
        image_channels: vec![1],
        loss_scaler: None,
    }
}

#[test]
fn saved_weights_load_back_exactly_and_give_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        tissue_config(dir.path(), "unet3d", "[network.params]\nbase_channels = 4\ndepth = 2\nnorm = \"batch\"");
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("unet3d")], dirs: vec![] });
    tch::manual_seed(11);
    let mut a = Model::build(&reg, &settings, one_per_section(&settings), Device::Cpu).unwrap();
    assert!(!a.buffers.is_empty(), "batch norm has running statistics");
    // Move the running statistics away from their initial values.
    let x = Tensor::randn([2, 1, 8, 8, 8], (Kind::Float, Device::Cpu));
    let _ = a.forward(&x, true).unwrap();
    let ckpt = dir.path().join("ckpt");
    let weights = checkpoint::save(&ckpt, &a, &[], &meta(7)).unwrap();
    assert_eq!(checkpoint::list(&ckpt), vec![(7, weights.clone())]);
    assert_eq!(checkpoint::read_meta(&weights).unwrap(), meta(7));

    tch::manual_seed(12);
    let mut b = Model::build(&reg, &settings, one_per_section(&settings), Device::Cpu).unwrap();
    let differs = a.params.iter().zip(&b.params).any(|((_, p), (_, q))| !p.equal(q));
    assert!(differs, "another seed gives other initial weights");
    checkpoint::load_weights(&weights, &mut b).unwrap();
    for ((na, ta), (nb, tb)) in a.state().zip(b.state()) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after loading");
    }
    let (ya, yb) = (a.forward(&x, false).unwrap(), b.forward(&x, false).unwrap());
    assert!(ya.allclose(&yb, 0.0, 0.0, false));
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("unet3d")], dirs: vec![] });
    let small = tissue_config(dir.path(), "unet3d", "[network.params]\nbase_channels = 4");
    let small = load(Some(&small), &Overrides::default()).unwrap();
    let model = Model::build(&reg, &small, one_per_section(&small), Device::Cpu).unwrap();
    let weights = checkpoint::save(&dir.path().join("c"), &model, &[], &meta(1)).unwrap();
    let wide = tissue_config(dir.path(), "unet3d", "[network.params]\nbase_channels = 6");
    let wide = load(Some(&wide), &Overrides::default()).unwrap();
    let mut other = Model::build(&reg, &wide, one_per_section(&wide), Device::Cpu).unwrap();
    let err = checkpoint::load_weights(&weights, &mut other).unwrap_err().to_string();
    assert!(err.contains("the network expects"), "{err}");
    assert!(err.starts_with(&format!("checkpoint {}: tensor `", weights.display())), "{err}");
}

#[test]
fn checkpoints_record_the_image_channels_and_an_ensemble_must_agree_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("toynet")], dirs: vec![] });
    let config = tissue_config(dir.path(), "toynet", "");
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let sections = &settings.segmentation.image;
    let two = ChannelLayout::recorded(sections, &[2]).unwrap();
    let model = Model::build(&reg, &settings, two.clone(), Device::Cpu).unwrap();
    // The model's channels are recorded, whatever the metadata given says.
    let four_d = checkpoint::save(&dir.path().join("a"), &model, &[], &meta(1)).unwrap();
    assert_eq!(checkpoint::read_meta(&four_d).unwrap().image_channels, vec![2]);
    assert_eq!(checkpoint::recorded_channels(std::slice::from_ref(&four_d), sections).unwrap(), two);
    let one = Model::build(&reg, &settings, one_per_section(&settings), Device::Cpu).unwrap();
    let three_d = checkpoint::save(&dir.path().join("b"), &one, &[], &meta(1)).unwrap();
    let err = checkpoint::recorded_channels(&[three_d.clone(), four_d.clone()], sections).unwrap_err().to_string();
    assert!(err.starts_with(&format!("checkpoint {}: takes image channels t1: 2", four_d.display())), "{err}");
    assert!(err.contains(&format!("checkpoint {} takes t1: 1", three_d.display())), "{err}");
    // A checkpoint written before channels were recorded, or without metadata: one per section.
    let json = three_d.with_extension("json");
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("image_channels");
    std::fs::write(&json, old.to_string()).unwrap();
    assert_eq!(checkpoint::read_meta(&three_d).unwrap().image_channels, Vec::<usize>::new());
    assert_eq!(checkpoint::recorded_channels(&[three_d.clone()], sections).unwrap(), one_per_section(&settings));
    std::fs::remove_file(&json).unwrap();
    assert_eq!(checkpoint::recorded_channels(&[three_d], sections).unwrap(), one_per_section(&settings));
}

#[test]
fn training_resumes_from_the_latest_complete_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "toynet",
        "batch_size = 1\nspatial_window_size = [12, 12, 12]\n[training]\nmax_iter = 6\nsave_every_n = 3\nmax_checkpoints = 5",
    );
    let c = config.to_str().unwrap();
    let out = run(dir.path(), &["train", "-c", c]);
    assert!(out.status.success(), "{}", text(&out).1);
    let ckpt = dir.path().join("model/checkpoints");
    assert_eq!(checkpoint::list(&ckpt).iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 6]);
    // A half-written checkpoint (no JSON) is not complete: it is removed, with a warning,
    // and the run resumes from the latest complete one.
    std::fs::write(ckpt.join("iter_00000009.safetensors"), b"partial").unwrap();
    std::fs::write(ckpt.join("iter_00000009.optim.tmp"), b"partial").unwrap();
    let out = run(dir.path(), &["train", "-c", c, "--starting-iter", "-1", "--max-iter", "8", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed from checkpoint") && stderr.contains("iter_00000006"), "{stderr}");
    assert_eq!(stderr.matches("removed the leftover of a checkpoint save").count(), 2, "{stderr}");
    assert!(!ckpt.join("iter_00000009.safetensors").exists() && !ckpt.join("iter_00000009.optim.tmp").exists());
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report["started_at"].as_u64(), report["iterations"].as_u64()), (Some(6), Some(8)));
    let log = std::fs::read_to_string(dir.path().join("model/train_log.jsonl")).unwrap();
    let iterations: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iterations, vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn a_resumed_run_gives_the_same_losses_as_an_uninterrupted_one() {
    let body = "batch_size = 2\nspatial_window_size = [12, 12, 12]\n\
                [training]\nmax_iter = 8\nsave_every_n = 4\noptimiser = \"adam\"\nlr_schedule = \"cosine\"\nwarmup_iters = 2";
    let whole = tempfile::tempdir().unwrap();
    plugin_dir(whole.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let c = tissue_config(whole.path(), "toynet", body);
    let out = run(whole.path(), &["train", "-c", c.to_str().unwrap(), "--set", "system.torch_threads=1"]);
    assert!(out.status.success(), "{}", text(&out).1);

    let parts = tempfile::tempdir().unwrap();
    plugin_dir(parts.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let c = tissue_config(parts.path(), "toynet", body);
    let c = c.to_str().unwrap();
    // The same run, then rewound to the moment right after the checkpoint of iteration 4
    // (as if killed there: later checkpoints gone; --max-iter would change the schedule),
    // then resumed: the log's lines after iteration 4 are dropped and written again.
    let first = run(parts.path(), &["train", "-c", c, "--set", "system.torch_threads=1"]);
    assert!(first.status.success(), "{}", text(&first).1);
    let model = parts.path().join("model");
    assert!(model.join("checkpoints/iter_00000004.optim.safetensors").is_file());
    for f in ["iter_00000008.json", "iter_00000008.safetensors", "iter_00000008.optim.safetensors"] {
        std::fs::remove_file(model.join("checkpoints").join(f)).unwrap();
    }
    let second = run(parts.path(), &["train", "-c", c, "--set", "system.torch_threads=1", "--starting-iter", "-1"]);
    assert!(second.status.success(), "{}", text(&second).1);

    let (a, b) = (
        logged_losses(&whole.path().join("model/train_log.jsonl")),
        logged_losses(&parts.path().join("model/train_log.jsonl")),
    );
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "same losses, iteration by iteration, with weights, optimiser state and data stream restored");
}

#[test]
fn a_run_killed_while_checkpointing_leaves_the_latest_complete_checkpoint_usable() {
    let dir = tempfile::tempdir().unwrap();
    plugin_dir(dir.path(), &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    let config = tissue_config(
        dir.path(),
        "toynet",
        "batch_size = 1\nspatial_window_size = [12, 12, 12]\n[training]\nmax_iter = 100000\nsave_every_n = 1\nmax_checkpoints = 3",
    );
    let c = config.to_str().unwrap();
    let ckpt = dir.path().join("model/checkpoints");
    let settings = load(Some(&config), &Overrides::default()).unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("toynet")], dirs: vec![] });
    // Kill at a few different moments of a run that checkpoints every iteration.
    for (round, delay_ms) in [37u64, 211, 503].into_iter().enumerate() {
        let starting = if round == 0 { "0" } else { "-1" };
        let child = std::process::Command::new(niftyhost_tests::niftyhost_bin())
            .current_dir(dir.path())
            .args(["-q", "train", "-c", c, "--starting-iter", starting])
            .env_remove("NIFTYHOST_PLUGIN_PATH")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed however this round ends, so a failing assertion leaves no training behind.
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill(); // SIGKILL
                let _ = self.0.wait();
            }
        }
        let child = KillOnDrop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let before = checkpoint::list(&ckpt).last().map_or(0, |(i, _)| *i);
        while checkpoint::list(&ckpt).last().map_or(0, |(i, _)| *i) < before + 2 {
            assert!(std::time::Instant::now() < deadline, "no checkpoints appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        drop(child);
        let (iteration, weights) = checkpoint::list(&ckpt).last().cloned().expect("a complete checkpoint survives");
        assert_eq!(checkpoint::read_meta(&weights).unwrap().iteration, iteration);
        let mut model = Model::build(&reg, &settings, one_per_section(&settings), Device::Cpu).unwrap();
        checkpoint::load_weights(&weights, &mut model).unwrap();
        assert!(checkpoint::read_optimiser(&weights).unwrap().is_some());
    }
}

#[test]
fn a_save_that_fails_part_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("unet3d")], dirs: vec![] });
    let small = tissue_config(dir.path(), "unet3d", "[network.params]\nbase_channels = 4");
    let small_settings = load(Some(&small), &Overrides::default()).unwrap();
    let model = Model::build(&reg, &small_settings, one_per_section(&small_settings), Device::Cpu).unwrap();
    let optimiser = vec![("step".to_owned(), Tensor::from_slice(&[3.0f32]))];
    let ckpt = dir.path().join("c");
    checkpoint::save(&ckpt, &model, &optimiser, &meta(1)).unwrap();
    let before = files(&ckpt);
    // The metadata's temporary name is taken by a folder: weights and optimiser state are
    // written and renamed, then the JSON fails.
    let (_, json) = checkpoint::paths(&ckpt, 2);
    let blocker = json.with_extension("json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let err = checkpoint::save(&ckpt, &model, &optimiser, &meta(2)).unwrap_err().to_string();
    assert!(err.contains("iter_00000002.json.tmp"), "{err}");
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(files(&ckpt), before, "the failed save removed what it wrote");
    // Failing at the optimiser state: the weights already renamed go too.
    let (weights, _) = checkpoint::paths(&ckpt, 3);
    let blocker = checkpoint::optimiser_path(&weights).with_extension("tmp");
    std::fs::create_dir(&blocker).unwrap();
    assert!(checkpoint::save(&ckpt, &model, &optimiser, &meta(3)).is_err());
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(files(&ckpt), before);
    assert_eq!(checkpoint::list(&ckpt).len(), 1);
}

#[test]
fn leftovers_of_a_crashed_save_are_removed_and_complete_checkpoints_kept() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("unet3d")], dirs: vec![] });
    let small = tissue_config(dir.path(), "unet3d", "[network.params]\nbase_channels = 4");
    let small_settings = load(Some(&small), &Overrides::default()).unwrap();
    let model = Model::build(&reg, &small_settings, one_per_section(&small_settings), Device::Cpu).unwrap();
    let ckpt = dir.path().join("c");
    let complete = checkpoint::save(&ckpt, &model, &[], &meta(1)).unwrap();
    // What a process killed during the save of iteration 2 leaves: weights renamed, the
    // optimiser state and the JSON still under their temporary names.
    let (weights, json) = checkpoint::paths(&ckpt, 2);
    std::fs::copy(&complete, &weights).unwrap();
    std::fs::write(checkpoint::optimiser_path(&weights).with_extension("tmp"), b"partial").unwrap();
    std::fs::write(json.with_extension("json.tmp"), b"{").unwrap();
    std::fs::write(ckpt.join("notes.txt"), b"not ours").unwrap();
    let removed = checkpoint::remove_incomplete(&ckpt).unwrap();
    let names: Vec<String> = removed.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["iter_00000002.json.tmp", "iter_00000002.optim.tmp", "iter_00000002.safetensors"]);
    assert_eq!(files(&ckpt), ["iter_00000001.json", "iter_00000001.safetensors", "notes.txt"]);
    assert_eq!(checkpoint::list(&ckpt), vec![(1, complete)]);
    assert!(checkpoint::remove_incomplete(&dir.path().join("absent")).unwrap().is_empty());
}

/// The file names in `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

//! A training run's logs in `<model_dir>`: `train_log.jsonl` (one JSON object per
//! iteration, and one per validation), TensorBoard event files in `logs/` (scalars, and
//! slices of input, label and prediction), and `loss_curve.png` written at the end.
//!
//! A resumed run keeps the log up to the iteration it resumes from and drops what came
//! after it (those iterations are trained again), so the log reads as one run.

pub mod loss_curve;
pub mod raster;
pub mod records;
pub mod slices;
pub mod tensorboard;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use tch::Tensor;

use records::{StepRecord, Validation};
use tensorboard::{EventWriter, SummaryValue};

/// The per-step log's file name in `<model_dir>`.
pub const JSONL_FILE: &str = "train_log.jsonl";

/// The open logs of a run.
pub struct RunLog {
    jsonl: BufWriter<File>,
    jsonl_path: PathBuf,
    curve_path: PathBuf,
    events: Option<EventWriter>,
    train: Vec<(f64, f64)>,
    validation: Vec<(f64, f64)>,
}

fn io_error(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// The iteration a log line belongs to, and its training loss if it is a step.
fn parse_line(line: &str) -> Option<(u64, Option<f64>, Option<f64>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if let Some(valid) = v.get("validation") {
        return Some((valid.get("iteration")?.as_u64()?, None, valid.get("loss")?.as_f64()));
    }
    Some((v.get("iteration")?.as_u64()?, v.get("loss")?.as_f64(), None))
}

impl RunLog {
    /// Opens the logs of a run starting at iteration `start` (0: a fresh run, whose log
    /// replaces any old one). `tensorboard` adds an event file in `<model_dir>/logs`.
    ///
    /// # Errors
    /// A file that cannot be read or written, named.
    pub fn open(model_dir: &Path, start: u64, tensorboard: bool) -> Result<RunLog, String> {
        let jsonl_path = model_dir.join(JSONL_FILE);
        let mut kept = Vec::new();
        let (mut train, mut validation) = (Vec::new(), Vec::new());
        if start > 0 {
            if let Ok(file) = File::open(&jsonl_path) {
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| io_error(&jsonl_path, e))?;
                    let Some((iteration, loss, valid)) = parse_line(&line) else { continue };
                    if iteration > start {
                        continue;
                    }
                    if let Some(loss) = loss {
                        train.push((iteration as f64, loss));
                    }
                    if let Some(loss) = valid {
                        validation.push((iteration as f64, loss));
                    }
                    kept.push(line);
                }
            }
        }
        // The kept lines go to a new file that replaces the old one only once written.
        let fresh = jsonl_path.with_extension("jsonl.tmp");
        let mut jsonl = BufWriter::new(File::create(&fresh).map_err(|e| io_error(&fresh, e))?);
        for line in &kept {
            writeln!(jsonl, "{line}").map_err(|e| io_error(&fresh, e))?;
        }
        jsonl.flush().map_err(|e| io_error(&fresh, e))?;
        std::fs::rename(&fresh, &jsonl_path).map_err(|e| io_error(&jsonl_path, e))?;
        let events = if tensorboard {
            let dir = model_dir.join("logs");
            Some(EventWriter::create(&dir).map_err(|e| io_error(&dir, e))?)
        } else {
            None
        };
        Ok(RunLog { jsonl, jsonl_path, curve_path: model_dir.join("loss_curve.png"), events, train, validation })
    }

    /// The JSONL log's path.
    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl_path
    }

    /// The TensorBoard event file, if written.
    pub fn event_file(&self) -> Option<&Path> {
        self.events.as_ref().map(EventWriter::path)
    }

    fn scalars(&mut self, step: u64, values: &[(&str, f64)]) {
        if let Some(events) = self.events.as_mut() {
            for &(tag, v) in values {
                if v.is_finite() {
                    if let Err(e) = events.add(step, tag, &SummaryValue::Scalar(v as f32)) {
                        tracing::warn!(file = %events.path().display(), "TensorBoard events not written: {e}");
                        self.events = None;
                        return;
                    }
                }
            }
        }
    }

    /// Logs one iteration.
    pub fn step(&mut self, record: &StepRecord) {
        self.train.push((record.iteration as f64, record.loss));
        if let Ok(line) = serde_json::to_string(record) {
            let _ = writeln!(self.jsonl, "{line}");
        }
        self.scalars(
            record.iteration,
            &[
                ("train/loss", record.loss),
                ("train/lr", record.lr),
                ("train/grad_norm", record.grad_norm),
                ("speed/patches_per_s", record.patches_per_s),
                ("speed/data_wait_pct", record.data_wait_pct),
                ("speed/step_s", record.step_s),
            ],
        );
    }

    /// Logs one validation.
    pub fn validation(&mut self, v: &Validation) {
        self.validation.push((v.iteration as f64, v.loss));
        let _ = writeln!(self.jsonl, "{}", serde_json::json!({ "validation": v }));
        let mut values = vec![("validation/loss".to_owned(), v.loss)];
        values.extend(v.dice.iter().enumerate().map(|(c, d)| (format!("validation/dice_{c}"), *d)));
        let values: Vec<(&str, f64)> = values.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.scalars(v.iteration, &values);
    }

    /// Adds the middle slices of one window (input channel 0, label, prediction) to the
    /// TensorBoard file.
    ///
    /// # Shapes
    /// image `[D, H, W]` float, label and prediction `[D, H, W]` integer classes
    pub fn slices(&mut self, step: u64, image: &Tensor, label: &Tensor, prediction: &Tensor, classes: usize) {
        let Some(events) = self.events.as_mut() else { return };
        let max = Some((classes.max(2) - 1) as f64);
        for grey in slices::middle_slices(&[(image, None), (label, max), (prediction, max)]) {
            let Ok(png) = raster::encode_png(&grey.pixels, grey.width, grey.height, png::ColorType::Grayscale) else {
                continue;
            };
            let tag = format!("windows/{} (input, label, prediction)", grey.plane);
            let image = SummaryValue::Image { png: &png, height: grey.height, width: grey.width, channels: 1 };
            if let Err(e) = events.add(step, &tag, &image) {
                tracing::warn!(file = %events.path().display(), "TensorBoard images not written: {e}");
            }
        }
    }

    /// Pushes buffered lines and events to disk.
    pub fn flush(&mut self) {
        let _ = self.jsonl.flush();
        if let Some(events) = self.events.as_mut() {
            let _ = events.flush();
        }
    }

    /// Flushes everything and draws the loss curve; returns its path.
    ///
    /// # Errors
    /// The PNG cannot be written.
    pub fn finish(&mut self, title: &str) -> Result<PathBuf, String> {
        self.flush();
        let png = loss_curve::draw(&self.train, &self.validation, title).to_png().map_err(|e| e.to_string())?;
        std::fs::write(&self.curve_path, png).map_err(|e| io_error(&self.curve_path, e))?;
        Ok(self.curve_path.clone())
    }
}

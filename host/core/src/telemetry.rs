//! Logs and progress on stderr: a `tracing-subscriber` fmt layer whose writes suspend the
//! active progress bar, so bars and log lines never clobber each other. Plugins' records
//! arrive through the host callback and are re-emitted here.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Writes log lines to stderr around the active progress bar.
#[derive(Clone, Copy)]
struct BarAwareStderr;

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE_BAR.lock().map(|b| b.clone()).unwrap_or(None);
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|_| buf.len()),
            None => std::io::stderr().write_all(buf).map(|_| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for BarAwareStderr {
    type Writer = BarAwareStderr;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the subscriber: `RUST_LOG` if set, else `info` (`-v`: debug, `-vv`: trace,
/// `-q`: warnings only).
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BarAwareStderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// Progress of a long job on stderr: a bar on a terminal, periodic log lines otherwise.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    first: u64,
    total: u64,
    unit: &'static str,
}

impl Progress {
    /// A bar over `first..total` steps of `unit` (e.g. "it").
    pub fn new(first: u64, total: u64, unit: &'static str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_position(first);
        if let Ok(mut active) = ACTIVE_BAR.lock() {
            *active = Some(bar.clone());
        }
        Progress { bar, started: Instant::now(), first, total, unit }
    }

    /// Steps per second since the start.
    pub fn rate(&self, position: u64) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (position - self.first) as f64 / secs
        } else {
            0.0
        }
    }

    /// Seconds left at the current rate.
    pub fn eta_secs(&self, position: u64) -> f64 {
        let rate = self.rate(position);
        if rate > 0.0 {
            (self.total - position) as f64 / rate
        } else {
            f64::INFINITY
        }
    }

    /// Moves to `position` with a status message.
    pub fn update(&self, position: u64, message: String) {
        self.bar.set_prefix(self.unit);
        self.bar.set_position(position);
        self.bar.set_message(message);
    }

    /// Whether the bar is drawn (stderr is a terminal).
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Ok(mut active) = ACTIVE_BAR.lock() {
            *active = None;
        }
    }
}

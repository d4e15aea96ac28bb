//! Plugins as the torch-free part sees them: where plugin libraries are looked for
//! ([`discover`]). Loading them is the engine's (`niftyhost::plugins`).

pub mod discover;

pub use discover::{Candidate, SearchPath};

//! Plugins: where they are looked for ([`discover`]), how one library is loaded and
//! checked ([`load`]), and the registry that maps component names to libraries.

pub mod discover;
pub mod load;
pub mod registry;

pub use discover::{Candidate, SearchPath};
pub use load::{LoadError, LoadErrorKind, LoadedLibrary};
pub use registry::{Registry, RegistryError};

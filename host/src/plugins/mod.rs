//! Plugins: where they are looked for ([`discover`]), how one library is loaded and
//! checked ([`load`], [`layout`]), what it declares ([`info`]), the registry that maps
//! component names to libraries, and its listing ([`listing`]).

pub mod info;
pub mod layout;
pub mod listing;
pub mod load;
pub mod registry;

pub use discover::{Candidate, SearchPath};
pub use info::{Component, LibraryInfo, Parameter};
pub use listing::{ListingRow, ListingTable};
pub use load::{LoadError, LoadErrorKind, LoadedLibrary};
pub use niftyhost_core::plugins::discover;
pub use registry::{ExplicitFailures, Registry, RegistryError};

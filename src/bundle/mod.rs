//! Bundles: the manifest model, finding and loading bundles, the bundle
//! digest, the schema check and the named validation gates.

pub mod digest;
pub mod discover;
pub mod gates;
pub mod load;
pub mod model;
pub mod schema;

pub use load::{LoadedBundle, load_for_stage};
pub use model::Bundle;

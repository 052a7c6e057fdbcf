//! The fleet: inventory loading (both upstream shapes), probes, and placement.

mod banners;
pub mod inventory;
pub mod placement;
pub mod probe_ssh;
mod slots;

pub use inventory::{Executor, Inventory, Reach};

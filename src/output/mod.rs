//! Output: the [`Printer`] owns stdout and stderr; every command's outcome is
//! rendered once through [`Render`] (human | json | github); long work reports
//! progress through a [`Reporter`](crate::stages::Reporter) implemented here.

pub mod escape;
pub mod nested_json;
pub mod printer;
pub mod render;
pub mod reporter;
pub mod spool;

pub use printer::Printer;
pub use render::{Render, Style};

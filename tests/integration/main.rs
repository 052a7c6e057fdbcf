//! One integration-test binary: every test runs the real `agentplane` binary
//! against a fresh temporary project root.

mod util;

mod compat;
mod evidence;
mod first_hour;
mod hostile;
mod integrity;
mod output;
mod pipeline;
mod place;
mod qemu;
mod readme;
mod remote_vm;
mod ssh;
mod sshd;
mod transparency;
mod validate;

//! One integration-test binary: every test runs the real `agentplane` binary
//! against a fresh temporary project root.

mod util;

mod evidence;
mod hostile;
mod pipeline;
mod place;
mod qemu;
mod ssh;
mod sshd;
mod validate;

//! # spate-tuning
//!
//! The host doctor behind `spate-tune`: what an edge box needs before it
//! takes traffic (limits, sysctls, io_uring, CPU and NIC layout), checked
//! against files under a root directory so every parser and check runs on
//! fixture trees in tests, and applied as sysctl writes plus a systemd
//! drop-in for what a process cannot set itself.
//!
//! - [`parse`]: pure parsers of /proc and /sys text.
//! - [`check`]: the checks (what the host has, what Spate wants, why, fix).
//! - [`probe`]: an io_uring probe of the running kernel.
//! - [`apply`]: the fixes: writes, `/etc/sysctl.d` file, systemd drop-in.
pub mod apply;
pub mod check;
pub mod parse;
pub mod probe;

//! # spate-engine
//!
//! The only crate of Spate that does I/O. One io_uring event loop per core,
//! pinned; cores talk through bounded SPSC queues ([`runtime::mesh`]); files
//! are delivered by the kernel from a shared mapping or by splice through the
//! ring. docs/architecture.md walks one request through it.
//!
//! - [`runtime`]: the ring, provided buffers, mesh, slab.
//! - [`net`]: SO_REUSEPORT listeners.
//! - [`deliver`]: the HTTP worker and static files.
//! - [`server`]: starting and stopping the workers.
//! - [`config`]: the TOML configuration.
//! - [`control`]: the control plane (API, triggers, metrics, reload).
pub mod config;
pub mod control;
pub mod deliver;
pub mod ingest;
pub mod live;
pub mod net;
pub mod runtime;
pub mod server;

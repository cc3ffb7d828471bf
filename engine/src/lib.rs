//! # spate-engine
//!
//! The only crate of Spate that does I/O. One io_uring event loop per core,
//! pinned; cores talk through bounded SPSC queues; files are delivered by the
//! kernel (splice through the ring, or send from a shared mapping).

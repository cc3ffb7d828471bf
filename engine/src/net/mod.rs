//! Listening sockets.
pub mod listener;

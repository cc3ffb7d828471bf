//! Live streams: the per-core window of packaged media and viewer cursors.
pub mod buffer;

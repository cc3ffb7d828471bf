//! The per-core runtime: an io_uring ([`ring`]), its provided receive
//! buffers ([`bufring`]), the cross-core queues ([`mesh`]) and the slab of
//! per-connection state ([`slab`]). The worker loop that drives them for HTTP
//! lives in `deliver::http_worker`.
pub mod bufring;
pub mod mesh;
pub mod ring;
pub mod slab;

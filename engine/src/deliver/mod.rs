//! Delivery: the HTTP worker (connections, requests, responses) and the
//! static file store it serves from.
pub mod http_worker;
pub mod push;
pub mod static_files;

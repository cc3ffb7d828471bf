//! `spate-tune`: checks (and later applies) host settings an edge box needs.
fn main() {}

//! What a reload changes, and what needs a restart.
use crate::config::Config;

/// A one-line summary of the differences between two configurations.
pub fn summarize(old: &Config, new: &Config) -> String {
    let mut parts = Vec::new();
    let names = |c: &Config| c.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let (a, b) = (names(old), names(new));
    let added: Vec<_> = b.iter().filter(|n| !a.contains(n)).cloned().collect();
    let removed: Vec<_> = a.iter().filter(|n| !b.contains(n)).cloned().collect();
    if !added.is_empty() {
        parts.push(format!("streams added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("streams removed: {}", removed.join(", ")));
    }
    if parts.is_empty() {
        "configuration applied".to_string()
    } else {
        parts.join("; ")
    }
}

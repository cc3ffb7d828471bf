//! What a reload changes, and what needs a restart.
//!
//! Applied while running (no publisher or viewer of an unchanged stream is
//! dropped): `[[stream]]` (settings apply to publishes from now on; UDP and
//! `http://` sources start and stop), `[live]` stream defaults,
//! `rtmp.stream_name`, `[[push]]`, `[[trigger]]`, `[triggers]`, `[access]`.
//! Read once at startup (a change is reported, and takes effect at the next
//! start): `[server]`, `[http]`, the rest of `[rtmp]`, `[api]`, `[log]`, and
//! `ts-exec:` sources.
use serde::Serialize;

use crate::config::Config;

fn same<T: Serialize>(a: &T, b: &T) -> bool {
    toml::to_string(a).ok() == toml::to_string(b).ok()
}

/// The sections (or keys) whose change needs a restart.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !same(&old.server, &new.server) {
        out.push("[server]");
    }
    if !same(&old.http, &new.http) {
        out.push("[http]");
    }
    let mut rtmp = new.rtmp.clone();
    rtmp.stream_name = old.rtmp.stream_name;
    if !same(&old.rtmp, &rtmp) {
        out.push("[rtmp] (other than stream_name)");
    }
    let mut api = new.api.clone();
    // Read per connection by the API thread: these apply at once.
    api.token = old.api.token.clone();
    api.trusted = old.api.trusted.clone();
    api.max_body_bytes = old.api.max_body_bytes;
    if !same(&old.api, &api) {
        out.push("[api] (other than token, trusted, max_body_bytes)");
    }
    if !same(&old.log, &new.log) {
        out.push("[log]");
    }
    // Set on each worker once, at its start (the SO_SNDBUF it gives viewers).
    if old.live.viewer_send_buffer != new.live.viewer_send_buffer {
        out.push("[live] viewer_send_buffer");
    }
    out
}

/// A one-line summary of the differences between two configurations.
pub fn summarize(old: &Config, new: &Config) -> String {
    let mut parts = Vec::new();
    let names = |c: &Config| c.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let (a, b) = (names(old), names(new));
    let added: Vec<_> = b.iter().filter(|n| !a.contains(n)).cloned().collect();
    let removed: Vec<_> = a.iter().filter(|n| !b.contains(n)).cloned().collect();
    let changed: Vec<_> = new
        .streams
        .iter()
        .filter(|s| {
            old.streams
                .iter()
                .find(|o| o.name == s.name)
                .is_some_and(|o| !same(o, *s))
        })
        .map(|s| s.name.clone())
        .collect();
    if !added.is_empty() {
        parts.push(format!("streams added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("streams removed: {}", removed.join(", ")));
    }
    if !changed.is_empty() {
        parts.push(format!("streams changed: {}", changed.join(", ")));
    }
    if !same(&old.live, &new.live) {
        parts.push("[live] changed".into());
    }
    if !same(&old.pushes, &new.pushes) {
        parts.push(format!("[[push]] rules: {}", new.pushes.len()));
    }
    if !same(&old.trigger_list, &new.trigger_list) || !same(&old.triggers, &new.triggers) {
        parts.push(format!("triggers: {}", new.trigger_list.len()));
    }
    if !same(&old.access, &new.access) {
        parts.push("[access] changed".into());
    }
    let restart = needs_restart(old, new);
    if !restart.is_empty() {
        parts.push(format!(
            "changed but kept until a restart: {}",
            restart.join(", ")
        ));
    }
    if parts.is_empty() {
        "no changes".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_added_removed_and_restart_only_changes() {
        let old = Config::parse(
            "[[stream]]\nname = \"live\"\n[[stream]]\nname = \"old\"\n",
            "test",
        )
        .unwrap();
        let new = Config::parse(
            "[http]\nport = 8081\n[[stream]]\nname = \"live\"\nreconnect_grace = 1.0\n\
             [[stream]]\nname = \"news\"\n",
            "test",
        )
        .unwrap();
        let s = summarize(&old, &new);
        assert!(s.contains("streams added: news"), "{s}");
        assert!(s.contains("streams removed: old"), "{s}");
        assert!(s.contains("streams changed: live"), "{s}");
        assert!(s.contains("kept until a restart: [http]"), "{s}");
        assert_eq!(summarize(&old, &old), "no changes");
        // [live] applies to new publishes, except the viewers' send buffer.
        let live = Config::parse("[live]\nviewer_coalesce_ms = 50\n", "test").unwrap();
        assert!(needs_restart(&old, &live).is_empty());
        let sndbuf = Config::parse("[live]\nviewer_send_buffer = 65536\n", "test").unwrap();
        assert_eq!(needs_restart(&old, &sndbuf), ["[live] viewer_send_buffer"]);
    }
}

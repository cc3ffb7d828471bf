//! A reloaded configuration reaching a worker (`ControlRequest::Reload`).
//!
//! What changes at once: `[[push]]` rules (pushes no rule covers stop, new
//! ones start for live streams), UDP and `http://` sources (removed ones
//! close, their streams go into the reconnect grace and end; new ones
//! start; unchanged ones are not touched), and publishers of streams no
//! `[[stream]]` covers any more (disconnected). Stream settings and naming
//! apply to publishes from now on (the registry took them before this
//! message was sent). Everything else is read once at startup; a change to
//! it is reported by [`crate::control::reload::needs_restart`].
use std::sync::Arc;

use super::Worker;
use crate::config::Config;

impl Worker {
    pub(super) fn apply_config(&mut self, new: Arc<Config>) {
        let old = std::mem::replace(&mut self.config, new.clone());
        self.reload_access(&new);
        self.reload_push_rules(&new);
        self.reload_udp_sources(&new);
        self.reload_http_sources(&new);
        self.drop_unconfigured_publishers();
        if self.index == 0 {
            let exec = |c: &Config| {
                c.streams
                    .iter()
                    .filter(|s| {
                        s.source
                            .as_deref()
                            .is_some_and(|u| u.trim_start().starts_with("ts-exec:"))
                    })
                    .map(|s| (s.name.clone(), s.source.clone(), s.always_on))
                    .collect::<Vec<_>>()
            };
            if exec(&old) != exec(&new) {
                tracing::warn!(
                    "reload: ts-exec: sources changed; they are kept as they were until a restart"
                );
            }
        }
    }

    /// RTMP publishers whose stream the configuration no longer accepts are
    /// disconnected (their streams end after the reconnect grace, which a
    /// new publisher cannot use either).
    fn drop_unconfigured_publishers(&mut self) {
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                continue;
            };
            let Some(name) = c
                .live
                .as_deref()
                .and_then(|l| l.publisher_name())
                .map(|n| n.to_string())
            else {
                continue;
            };
            if self.registry.settings(&name).is_err() {
                tracing::info!(
                    "{}: {name} is no longer configured (reload); disconnecting its publisher",
                    self.conn_id(slot, generation)
                );
                self.close(slot, generation);
            }
        }
    }
}

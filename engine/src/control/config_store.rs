//! The running configuration, and changing it: `SIGHUP`, `POST
//! /api/reload`, and the API's stream/push edits all end in
//! [`ConfigStore::apply`].
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{ControlPlane, ControlRequest};
use crate::config::Config;
use crate::deliver::http_worker::WorkerMsg;

/// The configuration Spate runs with, where it came from, and the last
/// reload error.
#[derive(Debug)]
pub struct ConfigStore {
    path: Option<PathBuf>,
    current: Mutex<Arc<Config>>,
    last_error: Mutex<Option<String>>,
    control: Arc<ControlPlane>,
    registry: Arc<crate::live::Registry>,
    triggers: Arc<super::triggers::Triggers>,
}

impl ConfigStore {
    /// The store of a started server (`path`: `--config`, `None` = the
    /// embedded default).
    pub fn new(
        path: Option<PathBuf>,
        config: Arc<Config>,
        control: Arc<ControlPlane>,
        registry: Arc<crate::live::Registry>,
        triggers: Arc<super::triggers::Triggers>,
    ) -> Self {
        Self {
            path,
            current: Mutex::new(config),
            last_error: Mutex::new(None),
            control,
            registry,
            triggers,
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.current.lock().expect("config lock").clone()
    }

    /// Why the last reload failed (cleared by a good one).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("config lock").clone()
    }

    /// Read the configuration file again and apply it. On error the
    /// configuration in force stays, and the error is kept for the API.
    pub fn reload(&self) -> Result<String, String> {
        let parsed = match &self.path {
            Some(p) => Config::load(p),
            None => Ok(Config::embedded()),
        };
        match parsed {
            Ok(c) => self.apply(c),
            Err(e) => {
                let e = one_line(&e.to_string());
                *self.last_error.lock().expect("config lock") = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Put `new` in force (it is validated first): every worker gets it over
    /// the mesh. Returns a summary of what changed.
    pub fn apply(&self, new: Config) -> Result<String, String> {
        let new = match new.revalidate() {
            Ok(()) => Arc::new(new),
            Err(e) => {
                let e = one_line(&e.to_string());
                *self.last_error.lock().expect("config lock") = Some(e.clone());
                return Err(e);
            }
        };
        let mut cur = self.current.lock().expect("config lock");
        if let Err(e) = self.triggers.reconfigure(&new) {
            let e = format!("trigger: {e}");
            *self.last_error.lock().expect("config lock") = Some(e.clone());
            return Err(e);
        }
        let summary = super::reload::summarize(&cur, &new);
        let restart = super::reload::needs_restart(&cur, &new);
        if !restart.is_empty() {
            tracing::warn!(
                "reload: {} changed; the running values stay until a restart",
                restart.join(", ")
            );
        }
        self.registry.reconfigure(&new);
        self.control
            .send_all(|| WorkerMsg::Control(ControlRequest::Reload(new.clone())));
        *cur = new;
        *self.last_error.lock().expect("config lock") = None;
        Ok(summary)
    }
}

/// toml's errors quote the offending line over several lines; a log line or
/// an API answer wants one: the first line (file, line, column) and the last
/// (what is wrong: "unknown field `x`, expected one of ...").
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

//! Requests of the control plane, answered on the worker's own loop from
//! its own state (no lock, no shared counter).
use super::Worker;
use crate::control::{ControlRequest, WorkerSnapshot};

impl Worker {
    pub(super) fn on_control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Snapshot(reply) => {
                let _ = reply.send(WorkerSnapshot {
                    index: self.index,
                    counters: self.counters.clone(),
                });
            }
            ControlRequest::Kick { reply, .. } => {
                let _ = reply.send(0);
            }
            ControlRequest::Reload(config) => self.reload_access(&config),
        }
    }
}

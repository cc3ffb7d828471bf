//! The control plane: what an operator's systems talk to.
//!
//! Nothing here runs on a worker loop. The API listener and the trigger
//! runner have their own threads; they reach the workers only through the
//! mesh (a [`ControlRequest`] per worker, answered over a channel), so a
//! worker never takes a lock or waits for the control plane.
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deliver::http_worker::{Counters, WorkerMsg};
use crate::runtime::mesh::MeshEndpoint;

pub mod access;
pub mod api;
mod config_store;
pub mod metrics;
pub mod reload;
mod snapshot;
pub mod triggers;

pub use config_store::ConfigStore;
pub use snapshot::{
    ConnectionCounts, LoopSnapshot, PublisherSnapshot, PushSnapshot, SessionSnapshot,
    StreamSnapshot, TrackSnapshot, ViewerCounts,
};

/// What the control plane asks of a worker.
#[derive(Debug)]
pub enum ControlRequest {
    /// Answer with this worker's state (counters, streams, loop).
    Snapshot(mpsc::Sender<WorkerSnapshot>),
    /// Answer with the connections attached to streams on this worker.
    Sessions(mpsc::Sender<Vec<SessionSnapshot>>),
    /// Close the sessions with this id (`w0/c12.3`) or of this stream;
    /// answer with how many were closed.
    Kick {
        /// A session id, as listed by the API.
        id: Option<String>,
        /// Every session of this stream (exact name).
        stream: Option<String>,
        /// The count closed on this worker.
        reply: mpsc::Sender<usize>,
    },
    /// A new configuration, already parsed and validated: apply what can
    /// change while running.
    Reload(Arc<Config>),
}

/// One worker's state at the moment it answered.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// Worker index.
    pub index: usize,
    /// Its counters.
    pub counters: Counters,
    /// Connections open now.
    pub connections: ConnectionCounts,
    /// Streams with a replica on this core (every live stream, normally).
    pub streams: Vec<StreamSnapshot>,
    /// Pushes running on this core.
    pub pushes: Vec<PushSnapshot>,
    /// Loop utilisation and turn durations.
    pub event_loop: LoopSnapshot,
}

/// The control end of the mesh, shared by the threads of the control plane
/// (main thread, API). The mutex keeps the mesh's queues single-producer.
#[derive(Debug)]
pub struct ControlPlane {
    mesh: Mutex<MeshEndpoint<WorkerMsg>>,
    workers: usize,
}

impl ControlPlane {
    /// Wrap the control endpoint of the mesh.
    pub fn new(mesh: MeshEndpoint<WorkerMsg>) -> Self {
        let workers = mesh.workers();
        Self {
            mesh: Mutex::new(mesh),
            workers,
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Send `make()` to every worker (retrying while a queue is full).
    pub fn send_all(&self, mut make: impl FnMut() -> WorkerMsg) {
        let mesh = self.mesh.lock().expect("control mesh lock");
        for to in 0..self.workers {
            let mut msg = make();
            loop {
                match mesh.send(to, msg) {
                    Ok(()) => break,
                    Err(back) => {
                        msg = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
    }

    /// Ask every worker and collect the answers that arrive within
    /// `timeout` (a worker that does not answer in time is left out).
    pub fn ask_all<T>(
        &self,
        timeout: Duration,
        make: impl Fn(mpsc::Sender<T>) -> ControlRequest,
    ) -> Vec<T> {
        let (tx, rx) = mpsc::channel();
        self.send_all(|| WorkerMsg::Control(make(tx.clone())));
        drop(tx);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(self.workers);
        while out.len() < self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        }
        out
    }
}

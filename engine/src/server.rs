//! Starting the workers and stopping them.
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::control::api::{ApiContext, ApiServer};
use crate::control::{ConfigStore, ControlPlane};
use crate::deliver::http_worker::{self, Counters, WorkerMsg, WorkerSetup};
use crate::net::listener::{ListenError, check_congestion, reuseport_listeners};
use crate::runtime::mesh::Mesh;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The static root is missing or not a directory.
    #[error("http.root: {path} is not a usable directory: {source}")]
    Root {
        /// The configured path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP listener could not be opened.
    #[error("http.port: {0}")]
    Listen(#[from] ListenError),
    /// The RTMP listener could not be opened.
    #[error("rtmp.port: {0}")]
    RtmpListen(ListenError),
    /// `[server] tcp_congestion` names a congestion control this host does
    /// not offer.
    #[error("server.tcp_congestion: {0}")]
    Congestion(std::io::Error),
    /// The API listener could not be opened.
    #[error("api.port: cannot listen on {addr}: {source}")]
    ApiListen {
        /// `[api] bind:port`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A worker failed to start.
    #[error("{0}")]
    Worker(String),
}

/// A running server: its workers and the control endpoint of the mesh.
#[derive(Debug)]
pub struct Server {
    control: Arc<ControlPlane>,
    store: Arc<ConfigStore>,
    workers: Vec<JoinHandle<Counters>>,
    /// The `spate-exec` thread (runs `ts-exec:` commands), if any stream
    /// needs it; stopped after the workers.
    exec: Option<crate::ingest::exec::ExecThread>,
    /// The trigger runner (its threads start with the first trigger fired).
    triggers: Arc<crate::control::triggers::Triggers>,
    /// The API's state (metrics writers are added here).
    api_context: Arc<ApiContext>,
    /// The API listener, when `[api] enabled`.
    api: Option<ApiServer>,
    /// Address of the HTTP listener.
    pub http_addr: SocketAddr,
}

impl Server {
    /// Open the root and listeners, start one pinned worker per configured
    /// core, and return once every worker is accepting.
    pub fn start(config: Config) -> Result<Self, StartError> {
        Self::start_from(config, None)
    }

    /// [`Server::start`], remembering the file the configuration came from
    /// (re-read on reload; `None` = the embedded default).
    pub fn start_from(
        config: Config,
        path: Option<std::path::PathBuf>,
    ) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let root_path = &config.http.root;
        let root = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root_path)
            .map_err(|source| StartError::Root {
                path: root_path.display().to_string(),
                source,
            })?;
        let root = Arc::new(root);
        let n = config.worker_count();
        let http_addr = SocketAddr::new(config.server.bind, config.http.port);
        let cc = config.server.tcp_congestion.as_str();
        if !cc.is_empty() {
            check_congestion(cc).map_err(StartError::Congestion)?;
        }
        let listeners = reuseport_listeners(http_addr, n, cc)?;
        let mut rtmp_listeners: Vec<Option<socket2::Socket>> = if config.rtmp.enabled {
            let addr = SocketAddr::new(config.server.bind, config.rtmp.port);
            reuseport_listeners(addr, n, cc)
                .map_err(StartError::RtmpListen)?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            (0..n).map(|_| None).collect()
        };
        let api_listener = if config.api.enabled {
            let addr = SocketAddr::new(config.api.bind, config.api.port);
            Some(
                ApiServer::bind(&config.api)
                    .map_err(|source| StartError::ApiListen { addr, source })?,
            )
        } else {
            None
        };
        let registry = Arc::new(crate::live::Registry::new(&config));
        let (endpoints, control) = Mesh::<WorkerMsg>::build(n, 16384)
            .map_err(|e| StartError::Worker(format!("mesh: {e}")))?;
        // Commands of ts-exec: sources are started by one thread, never on a
        // worker loop (fork/exec and reaping block); it wakes a worker
        // through a duplicate of the worker's mesh eventfd.
        let wants_exec = config.streams.iter().any(|st| {
            st.source.as_deref().is_some_and(|s| {
                matches!(
                    crate::ingest::SourceUrl::parse(s),
                    Ok(crate::ingest::SourceUrl::TsExec(_))
                )
            })
        });
        let (exec, mut exec_ends) = if wants_exec {
            let wakers = endpoints
                .iter()
                .map(|ep| crate::ingest::exec::duplicate(ep.eventfd()))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| StartError::Worker(format!("exec thread: {e}")))?;
            let (t, ends) = crate::ingest::exec::ExecThread::start(wakers)
                .map_err(|e| StartError::Worker(format!("exec thread: {e}")))?;
            (Some(t), ends.into_iter().map(Some).collect())
        } else {
            (None, (0..n).map(|_| None).collect::<Vec<_>>())
        };
        // The trigger runner: always there (a reload may add triggers); its
        // threads start with the first job.
        let trigger_wakers = endpoints
            .iter()
            .map(|ep| crate::ingest::exec::duplicate(ep.eventfd()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| StartError::Worker(format!("trigger runner: {e}")))?;
        let (triggers, trigger_ends) =
            crate::control::triggers::Triggers::start(&config, trigger_wakers)
                .map_err(StartError::Worker)?;
        let triggers = Arc::new(triggers);
        let mut trigger_ends: Vec<_> = trigger_ends.into_iter().map(Some).collect();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let pin = config.server.pin_workers && !cores.is_empty();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(n);
        let mut workers = Vec::with_capacity(n);
        for (index, (listener, mesh)) in listeners.into_iter().zip(endpoints).enumerate() {
            let setup = WorkerSetup {
                index,
                listener,
                mesh,
                config: config.clone(),
                root: root.clone(),
                rtmp_listener: rtmp_listeners[index].take(),
                registry: registry.clone(),
                exec: exec_ends[index].take(),
                triggers: trigger_ends[index].take(),
            };
            let core = pin.then(|| cores[index % cores.len()]);
            let ready = ready_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("spate-w{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    http_worker::run(setup, ready)
                })
                .map_err(|e| StartError::Worker(format!("spawn worker {index}: {e}")))?;
            workers.push(h);
        }
        drop(ready_tx);
        let control = Arc::new(ControlPlane::new(control));
        let store = Arc::new(ConfigStore::new(
            path,
            config.clone(),
            control.clone(),
            registry.clone(),
            triggers.clone(),
        ));
        let api_context = Arc::new(ApiContext::new(control.clone(), store.clone()));
        {
            let triggers = triggers.clone();
            api_context.add_metrics_writer(Box::new(move |out: &mut String| {
                triggers.write_metrics(out)
            }));
        }
        let mut server = Self {
            control,
            store,
            workers,
            exec,
            triggers,
            api_context,
            api: None,
            http_addr,
        };
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    server.stop();
                    return Err(StartError::Worker(e));
                }
                Err(_) => {
                    server.stop();
                    return Err(StartError::Worker("a worker died while starting".into()));
                }
            }
        }
        if let Some(listener) = api_listener {
            let addr = SocketAddr::new(config.api.bind, config.api.port);
            match ApiServer::start(listener, &config.api, server.api_context.clone()) {
                Ok(api) => server.api = Some(api),
                Err(source) => {
                    server.stop();
                    return Err(StartError::ApiListen { addr, source });
                }
            }
        }
        // MistServer's SYSTEM_START: a blocking handler answering false
        // stops the server again.
        use crate::control::triggers::{Trigger, parse_bool};
        if let Some(Some(r)) = server.triggers.call_blocking(Trigger::SystemStart, "", "")
            && parse_bool(&r) == Some(false)
        {
            server.stop();
            return Err(StartError::Worker(
                "the SYSTEM_START trigger answered false: not starting".into(),
            ));
        }
        Ok(server)
    }

    /// The trigger runner (reload: [`Triggers::reconfigure`]; metrics:
    /// [`Triggers::write_metrics`]).
    ///
    /// [`Triggers::reconfigure`]: crate::control::triggers::Triggers::reconfigure
    /// [`Triggers::write_metrics`]: crate::control::triggers::Triggers::write_metrics
    pub fn triggers(&self) -> Arc<crate::control::triggers::Triggers> {
        self.triggers.clone()
    }

    /// The control end of the mesh (API, reload).
    pub fn control(&self) -> Arc<ControlPlane> {
        self.control.clone()
    }

    /// The configuration in force, and reloading it.
    pub fn config_store(&self) -> Arc<ConfigStore> {
        self.store.clone()
    }

    /// The API's state: where metrics writers are added.
    pub fn api_context(&self) -> Arc<ApiContext> {
        self.api_context.clone()
    }

    /// Address of the API listener, when it runs.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(ApiServer::addr)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Graceful stop: every worker stops accepting, finishes in-flight
    /// responses (up to `server.shutdown_timeout`) and exits. Returns the
    /// merged counters.
    pub fn stop(&mut self) -> Counters {
        if let Some(mut api) = self.api.take() {
            api.stop();
        }
        if !self.workers.is_empty() {
            // MistServer's SYSTEM_STOP (waited for when blocking; Spate
            // does not cancel its shutdown).
            let _ = self.triggers.call_blocking(
                crate::control::triggers::Trigger::SystemStop,
                "",
                "shutdown",
            );
        }
        self.control.send_all(|| WorkerMsg::Shutdown);
        let mut total = Counters::default();
        for h in self.workers.drain(..) {
            match h.join() {
                Ok(c) => total.add(&c),
                Err(_) => tracing::error!("a worker panicked"),
            }
        }
        if let Some(mut exec) = self.exec.take() {
            // Every worker has asked its commands to stop; what is left is
            // killed and reaped here.
            exec.stop();
        }
        self.triggers.stop();
        total
    }
}

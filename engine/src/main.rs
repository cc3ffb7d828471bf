//! `spate`: the server binary.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spate_engine::config::Config;
use spate_engine::server::Server;

/// Spate: a streaming media server for edge nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (default: the embedded configuration).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print a play token for STREAM (signed with `[access] play_secret`
    /// of the configuration) and exit; see docs/access.md.
    #[arg(long, value_name = "STREAM")]
    mint_token: Option<String>,
    /// Seconds the minted token stays valid (with --mint-token).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        requires = "mint_token"
    )]
    ttl: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(p) => Config::load(p),
        None => Ok(Config::embedded()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spate: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Some(stream) = &cli.mint_token {
        if config.access.play_secret.is_empty() {
            eprintln!("spate: --mint-token: the configuration has no [access] play_secret");
            return ExitCode::from(2);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = spate_engine::control::access::mint_token(
            config.access.play_secret.as_bytes(),
            stream,
            now.saturating_add(cli.ttl),
        );
        println!("{token}");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    abort_on_worker_panic();
    let signals = block_signals();
    let mut server = match Server::start_from(config.clone(), cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("spate: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        "spate {} serving {} on http://{} with {} workers",
        env!("CARGO_PKG_VERSION"),
        config.http.root.display(),
        server.http_addr,
        server.workers()
    );
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `signals` is an initialised sigset; sig is a live int.
        let rc = unsafe { libc::sigwait(&signals, &mut sig) };
        if rc != 0 {
            continue;
        }
        match sig {
            libc::SIGHUP => match server.config_store().reload() {
                Ok(summary) => tracing::info!("SIGHUP: configuration reloaded: {summary}"),
                Err(e) => tracing::error!("SIGHUP: reload refused, configuration unchanged: {e}"),
            },
            _ => {
                tracing::info!(
                    "signal {sig}: stopping (in-flight responses get {} s)",
                    config.server.shutdown_timeout
                );
                break;
            }
        }
    }
    let c = server.stop();
    tracing::info!(
        "stopped: {} connections, {} requests, {} rejected, {} send stalls, {} MB of bodies; \
         live: {} publishes refused, {} rtmp errors, {} viewer skips, {} viewers dropped, \
         {} mesh drops, {} timestamp rebases, {} segments, {} source errors, {} push errors, \
         {} sessions kicked; {} plays denied",
        c.accepted,
        c.requests,
        c.rejected,
        c.send_stalls,
        c.body_bytes / 1_000_000,
        c.publish_refused,
        c.rtmp_errors,
        c.viewer_skips,
        c.viewers_dropped,
        c.mesh_drops,
        c.rebases,
        c.segments,
        c.source_errors,
        c.push_errors,
        c.kicked,
        c.access_denied
    );
    ExitCode::SUCCESS
}

/// Block SIGINT/SIGTERM/SIGHUP in this thread (and so in every worker spawned
/// after) so they can be taken with `sigwait`; ignore SIGPIPE (sends use
/// MSG_NOSIGNAL, splice does not).
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use;
    // the calls only read/write the set we pass and the thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        set
    }
}

/// A worker that panics must not unwind: dropping its ring and buffers while
/// the kernel may still write into them (receives, provided buffers) is
/// memory corruption, and a dead worker's listener would keep taking
/// connections nobody serves. So a panic on a worker thread logs, then
/// aborts the process (a supervisor restarts it); other threads (API,
/// triggers, exec) unwind as usual.
fn abort_on_worker_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        if thread.name().is_some_and(|n| n.starts_with("spate-w")) {
            tracing::error!(
                "{}: {info}; aborting (a worker cannot unwind safely past its ring)",
                thread.name().unwrap_or("worker")
            );
            std::process::abort();
        }
    }));
}

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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

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
         {} sessions kicked",
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
        c.kicked
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

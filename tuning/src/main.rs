//! `spate-tune`: checks (and fixes) the host settings an edge box running
//! Spate needs. docs/tuning.md explains every check.
//!
//! - `spate-tune check`: one line per setting (ok / FAIL / warn / info),
//!   with what the host has, what Spate wants, why, and the fix. Exit status
//!   0 when the host is ready (no required check failed), 1 when it is not.
//! - `spate-tune apply --dry-run|--yes [--persist]`: write the sysctls and
//!   sysfs knobs that fix failed checks (`--dry-run` only says what it
//!   would write), optionally persist the sysctls in
//!   /etc/sysctl.d/90-spate.conf, and print the systemd drop-in for the
//!   limits a process cannot raise itself. Exit status as for `check`,
//!   after the writes.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use spate_tuning::apply;
use spate_tuning::check::{self, Check, Host, Level, Options};

#[derive(Debug, Parser)]
#[command(version, about = "Check and tune an edge host for Spate")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read the host's settings and report (the default).
    Check(Common),
    /// Fix what `check` reports.
    Apply {
        #[command(flatten)]
        common: Common,
        /// Only print what would be written.
        #[arg(long, conflicts_with = "yes", required_unless_present = "yes")]
        dry_run: bool,
        /// Write it.
        #[arg(long)]
        yes: bool,
        /// Also write the sysctls to <root>/etc/sysctl.d/90-spate.conf.
        #[arg(long)]
        persist: bool,
    },
}

#[derive(Debug, Args, Default)]
struct Common {
    /// Read (and write) the host's files under this directory instead of /
    /// (a fixture tree; the io_uring probe is then not run).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Workers Spate will run (0 = one per online CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Do not probe this kernel's io_uring.
    #[arg(long)]
    no_probe: bool,
}

fn run_checks(c: &Common) -> (Host, Vec<Check>) {
    let host = Host::new(&c.root);
    let probe = (!c.no_probe && c.root == std::path::Path::new("/")).then(spate_tuning::probe::run);
    let checks = check::checks(
        &host,
        &Options {
            workers: c.workers,
            probe,
        },
    );
    (host, checks)
}

fn report(checks: &[Check]) {
    for c in checks {
        let mark = match (c.ok, c.level) {
            (_, Level::Info) => "info",
            (true, _) => "ok  ",
            (false, Level::Required) => "FAIL",
            (false, Level::Recommended) => "warn",
        };
        println!("{mark} {:<40} {} (want {})", c.name, c.have, c.want);
        if !c.ok {
            println!("       why: {}", c.why);
            for f in &c.fixes {
                let how = match f {
                    check::Fix::Write { key, value, .. } => format!("set {key} = {value}"),
                    check::Fix::Systemd(l) => format!("systemd: {l}"),
                    check::Fix::Manual(m) => m.clone(),
                };
                println!("       fix: {how}");
            }
        }
    }
}

fn verdict(checks: &[Check]) -> ExitCode {
    let warn = checks
        .iter()
        .filter(|c| !c.ok && c.level == Level::Recommended)
        .count();
    if check::ready(checks) {
        println!("host is ready for Spate ({warn} recommendations)");
        ExitCode::SUCCESS
    } else {
        let fail = checks
            .iter()
            .filter(|c| !c.ok && c.level == Level::Required)
            .count();
        println!("host is NOT ready for Spate: {fail} required checks failed");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Check(Common::default_root())) {
        Cmd::Check(c) => {
            let (_, checks) = run_checks(&c);
            report(&checks);
            verdict(&checks)
        }
        Cmd::Apply {
            common,
            dry_run,
            yes: _,
            persist,
        } => {
            let (host, checks) = run_checks(&common);
            let plan = apply::plan(&checks);
            if plan.writes.is_empty() {
                println!("nothing to write");
            }
            let mut failed = false;
            for r in apply::write(&host, &plan, dry_run) {
                match r {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        failed = true;
                        eprintln!("spate-tune: {e}");
                    }
                }
            }
            if persist {
                let path = host.path("/etc/sysctl.d/90-spate.conf");
                if dry_run {
                    println!(
                        "would write {}:\n{}",
                        path.display(),
                        apply::sysctl_conf(&plan)
                    );
                } else if let Err(e) = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, apply::sysctl_conf(&plan)))
                {
                    failed = true;
                    eprintln!("spate-tune: cannot write {}: {e}", path.display());
                } else {
                    println!("wrote {}", path.display());
                }
            }
            println!("\n{}", apply::dropin(&plan));
            for m in &plan.manual {
                println!("by hand: {m}");
            }
            let (_, after) = run_checks(&common);
            let code = verdict(if dry_run { &checks } else { &after });
            if failed { ExitCode::FAILURE } else { code }
        }
    }
}

impl Common {
    fn default_root() -> Self {
        Self {
            root: PathBuf::from("/"),
            workers: 0,
            no_probe: false,
        }
    }
}

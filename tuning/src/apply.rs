//! `spate-tune apply`: turn failed checks into writes (sysctls, sysfs
//! knobs), a systemd drop-in, and what is left to the operator.
use crate::check::{Check, Fix, Host, Level, WANT_NOFILE};

/// What applying would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (name, path under the root, value, is a sysctl).
    pub writes: Vec<(String, String, String, bool)>,
    /// Lines for the `[Service]` section of a systemd drop-in.
    pub systemd: Vec<String>,
    /// Steps only the operator can take.
    pub manual: Vec<String>,
}

/// The fixes of every failed, non-informational check.
pub fn plan(checks: &[Check]) -> Plan {
    let mut p = Plan::default();
    for c in checks.iter().filter(|c| !c.ok && c.level != Level::Info) {
        for f in &c.fixes {
            match f {
                Fix::Write {
                    key,
                    path,
                    value,
                    sysctl,
                } => {
                    if !p.writes.iter().any(|w| w.1 == *path) {
                        p.writes
                            .push((key.clone(), path.clone(), value.clone(), *sysctl));
                    }
                }
                Fix::Systemd(line) => {
                    if !p.systemd.contains(line) {
                        p.systemd.push(line.clone());
                    }
                }
                Fix::Manual(m) => {
                    let m = format!("{}: {m}", c.name);
                    if !p.manual.contains(&m) {
                        p.manual.push(m);
                    }
                }
            }
        }
    }
    // Informational checks with a fix worth carrying into the unit (the
    // isolated cores to pin to).
    for c in checks.iter().filter(|c| c.level == Level::Info) {
        for f in &c.fixes {
            if let Fix::Systemd(line) = f
                && !p.systemd.contains(line)
            {
                p.systemd.push(line.clone());
            }
        }
    }
    p
}

/// Do the writes (or, `dry_run`, say what they would be). One line per
/// write: `Ok(what was done)` or `Err(why not)`.
pub fn write(host: &Host, plan: &Plan, dry_run: bool) -> Vec<Result<String, String>> {
    plan.writes
        .iter()
        .map(|(key, path, value, _)| {
            let file = host.root().join(path);
            if dry_run {
                return Ok(format!("would set {key} = {value} ({})", file.display()));
            }
            std::fs::write(&file, format!("{value}\n"))
                .map(|()| format!("set {key} = {value}"))
                .map_err(|e| format!("cannot set {key} = {value} ({}): {e}", file.display()))
        })
        .collect()
}

/// `/etc/sysctl.d/90-spate.conf`: the sysctls of the plan, so they survive
/// a reboot.
pub fn sysctl_conf(plan: &Plan) -> String {
    let mut out = String::from("# Written by spate-tune apply --persist\n");
    for (key, _, value, sysctl) in &plan.writes {
        if *sysctl {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out
}

/// A systemd drop-in for the spate service
/// (`/etc/systemd/system/spate.service.d/90-spate.conf`): the limits a
/// process cannot raise itself. Always carries `LimitNOFILE`.
pub fn dropin(plan: &Plan) -> String {
    let mut lines = plan.systemd.clone();
    let nofile = format!("LimitNOFILE={WANT_NOFILE}");
    if !lines.contains(&nofile) {
        lines.insert(0, nofile);
    }
    let mut out = String::from(
        "# /etc/systemd/system/spate.service.d/90-spate.conf (spate-tune)\n[Service]\n",
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(
        "# Only if a listener port is below 1024 and spate does not run as root:\n\
         # AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
    );
    out
}

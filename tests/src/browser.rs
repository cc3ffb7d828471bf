//! Headless Chromium through node + playwright-core (`tests/browser/`):
//! Debian's `/usr/bin/chromium` (or `$CHROMIUM`), npm packages installed by
//! `scripts/test.sh` (`npm ci` in `tests/browser`). Nothing is downloaded by a
//! test; anything missing is a loud panic.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::media::{Output, run_with_timeout};
use crate::workspace_root;

/// `tests/browser`: the npm project with the scripts and player pages.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests").join("browser")
}

/// A file installed by npm under `tests/browser/node_modules`. Panics loudly
/// if it is missing.
pub fn node_module_file(rel: &str) -> PathBuf {
    let p = browser_dir().join("node_modules").join(rel);
    assert!(
        p.is_file(),
        "\n\n*** {} is missing: the browser tests need the npm packages of tests/browser.\n\
         *** Run scripts/test.sh (installs them) or `cd tests/browser && npm ci`.\n\n",
        p.display()
    );
    p
}

fn check_tools() {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "\n\n*** node is required by the browser tests and cannot run ({other:?}).\n\
             *** Run scripts/test.sh (installs it) or `apt-get install -y nodejs npm`.\n\n"
        ),
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "\n\n*** {chromium} is missing: the browser tests need Debian's chromium.\n\
         *** Run scripts/test.sh (installs it) or `apt-get install -y chromium`.\n\n"
    );
    node_module_file("playwright-core/package.json");
}

/// Run `node tests/browser/<script> args…` (cwd `tests/browser`), killed
/// after `timeout`; its output files go to `scratch`.
pub fn run_node_script(scratch: &Path, script: &str, args: &[&str], timeout: Duration) -> Output {
    check_tools();
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join(script))
        .args(args)
        .current_dir(browser_dir());
    run_with_timeout(cmd, scratch, "node", timeout)
}

//! The Python venv of the end-to-end tests: `target/test-venv` under the
//! workspace root, made and filled by `scripts/test.sh` (its `PIP_NEEDS`:
//! `m3u8`, `mpegdash`). Tests never install anything themselves; a missing
//! venv or package is a loud panic that says how to get it.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::workspace_root;

/// The Python modules the harness imports, checked once per test process.
const MODULES: &[&str] = &["m3u8", "mpegdash"];

/// `<workspace>/target/test-venv`, where `scripts/test.sh` puts the venv
/// (always under the workspace's own `target/`, whatever `CARGO_TARGET_DIR`
/// says, as the script makes it).
pub fn venv_dir() -> PathBuf {
    workspace_root().join("target").join("test-venv")
}

/// The venv's python (`$SPATE_TEST_PYTHON` if set, else
/// `target/test-venv/bin/python3`), after checking once that it runs and
/// imports m3u8 and mpegdash. Panics loudly, saying how to install them, if
/// not.
pub fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = PYTHON.get_or_init(|| {
        let python = match std::env::var_os("SPATE_TEST_PYTHON").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => venv_dir().join("bin").join("python3"),
        };
        let check = format!("import {}", MODULES.join(", "));
        match Command::new(&python)
            .args(["-c", &check])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(python),
            Ok(o) => Err(format!(
                "`{} -c '{check}'` failed ({}): {}",
                python.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", python.display())),
        }
    });
    match r {
        Ok(p) => p,
        Err(e) => panic!(
            "\n\n*** The playlist tests need a Python venv with the PyPI packages m3u8 and mpegdash: {e}.\n\
             *** Run scripts/test.sh (it creates {venv} and installs them), or by hand:\n\
             ***   apt-get install -y python3-venv\n\
             ***   /usr/bin/python3 -m venv {venv}\n\
             ***   {venv}/bin/python3 -m pip install m3u8==6.0.0 mpegdash==0.4.1\n\
             *** ($SPATE_TEST_PYTHON may name another python that has both.)\n\n",
            venv = venv_dir().display()
        ),
    }
}

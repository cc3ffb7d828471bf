#!/usr/bin/env bash
# Spate's one test command (CI runs exactly this, through .ci/run):
#   1. installs the third-party clients the end-to-end tests drive, if missing;
#   2. cargo fmt --check, clippy (warnings are errors), build, test.
# Extra arguments go to `cargo test --workspace`, e.g. a name filter
# (`scripts/test.sh sigterm`) or `scripts/test.sh -- --test-threads=1`.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- 1. What the tests need -------------------------------------------------
# Debian packages, as "command-that-must-exist:package". Add to this list when
# a test starts using a new client (ffmpeg:ffmpeg, chromium:chromium,
# npm:npm, pip3:python3-pip, tshark:tshark, ...).
APT_NEEDS=(
  "curl:curl"
  "ffmpeg:ffmpeg"
  "ffprobe:ffmpeg"
  "chromium:chromium"
  "node:nodejs"
  "npm:npm"
  "php:php-cli"     # a MistServer-style trigger handler in PHP (tests/tests/control_triggers.rs)
  "ss:iproute2"     # socket state (tests/tests/lifecycle.rs: tcp_congestion)
)
# npm and PyPI packages, when tests need them, are installed here too, never
# downloaded by the tests. NPM_PROJECTS: directories with a committed
# package.json + package-lock.json, installed with `npm ci` (playwright-core
# drives Debian's chromium; it never downloads a browser). PIP_NEEDS (pinned)
# go to a venv at target/test-venv, made with Debian's /usr/bin/python3
# (python3-venv provides its ensurepip); tests find its python through
# spate_tests::venv_python().
NPM_PROJECTS=(
  "tests/browser"
)
PIP_NEEDS=(
  "m3u8==6.0.0"    # HLS playlist parser (tests/src/playlist.rs)
  "mpegdash==0.4.1" # DASH MPD parser (tests/src/playlist.rs)
  "prometheus_client==0.21.1" # Prometheus text-format parser (tests/tests/control_api.rs)
)
VENV=target/test-venv
SYSTEM_PYTHON=/usr/bin/python3

missing=()
for entry in "${APT_NEEDS[@]}"; do
  cmd=${entry%%:*}
  pkg=${entry#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# Debian's python3 keeps ensurepip (which `python3 -m venv` needs) in
# python3-venv; a bare Debian 12 has neither.
if ((${#PIP_NEEDS[@]})) && ! "$SYSTEM_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3" "python3-venv")
fi
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "scripts/test.sh: need root (or sudo) to install: ${missing[*]}" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  echo "==> apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for project in "${NPM_PROJECTS[@]}"; do
  # Reinstall when node_modules is missing or older than the lock file.
  if [[ ! -f $project/node_modules/.package-lock.json ||
    $project/package-lock.json -nt $project/node_modules/.package-lock.json ]]; then
    echo "==> npm ci in $project"
    (cd "$project" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
done
if ((${#PIP_NEEDS[@]})); then
  # Redo the venv when its python does not run (e.g. made by another python
  # that is gone) and reinstall when PIP_NEEDS changed since the last install.
  stamp=$VENV/.spate-pip-needs
  if ! "$VENV/bin/python3" -c '' >/dev/null 2>&1; then
    echo "==> python3 -m venv $VENV"
    rm -rf "$VENV"
    "$SYSTEM_PYTHON" -m venv "$VENV"
  fi
  if [[ ! -f $stamp || "$(cat "$stamp")" != "${PIP_NEEDS[*]}" ]]; then
    echo "==> pip install ${PIP_NEEDS[*]} (into $VENV)"
    "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "${PIP_NEEDS[@]}"
    echo "${PIP_NEEDS[*]}" >"$stamp"
  fi
fi

for tool in rustfmt clippy; do
  cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1 || {
    echo "scripts/test.sh: cargo ${tool/rustfmt/fmt} is missing (rustup component add $tool)" >&2
    exit 1
  }
done

# --- 2. Checks and tests ----------------------------------------------------
step() {
  echo
  echo "==> $*"
  "$@"
}
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo build --workspace
step cargo test --workspace --no-fail-fast "$@"
echo
echo "==> all checks passed"

//! Harness for end-to-end tests: start the real `spate` binary with a temp
//! config, find free ports, run real clients (curl, later ffmpeg and
//! Chromium) against it.

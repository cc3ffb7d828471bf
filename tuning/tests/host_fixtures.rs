//! `spate-tune` on fixture trees: a badly tuned 5.15 host and a tuned 6.1
//! host (tests/fixtures/*: the /proc and /sys files the checks read, with
//! the text the kernel writes there). `check` and `apply` run as a user
//! runs them, through the binary, with `--root` pointing at the tree (a
//! copy, for `apply --yes`).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tune(args: &[&str], root: &Path) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_spate-tune"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run spate-tune");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The report line of check `name` (starts with its mark).
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.len() > 5 && l[5..].starts_with(name))
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{report}"))
}

/// Copy a fixture tree (files, directories, symlinks) into a fresh temp dir.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ty.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn scratch(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spate-tune-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn an_old_untuned_host_is_not_ready_and_every_problem_is_named() {
    let (code, r) = tune(&["check"], &fixture("old-host"));
    assert_eq!(code, 1, "an old host must fail the check:\n{r}");
    assert!(line(&r, "kernel ").starts_with("FAIL"), "{r}");
    assert!(line(&r, "kernel ").contains("5.15.0-91-generic"), "{r}");
    assert!(
        line(&r, "kernel.io_uring_disabled").starts_with("FAIL"),
        "{r}"
    );
    for (name, have) in [
        ("open files", "1024, 524288"),
        ("net.core.somaxconn", "128"),
        ("net.ipv4.tcp_max_syn_backlog", "512"),
        ("net.ipv4.ip_local_port_range", "32768 60999"),
        ("net.ipv4.tcp_tw_reuse", "0"),
        ("net.core.default_qdisc", "pfifo_fast"),
        ("net.core.rmem_max", "212992"),
        ("CPU frequency governor", "powersave"),
        ("enp3s0 receive queues", "1"),
        ("enp3s0 interrupt affinity", "1 IRQs on cores 0"),
        ("transparent hugepages", "always"),
    ] {
        let l = line(&r, name);
        assert!(l.starts_with("warn"), "{name} should warn: {l}");
        assert!(l.contains(have), "{name} should report {have:?}: {l}");
    }
    assert!(line(&r, "fs.nr_open").starts_with("ok"), "{r}");
    assert!(r.contains("fix: set net.core.somaxconn = 4096"), "{r}");
    assert!(r.contains("fix: systemd: LimitNOFILE=1048576"), "{r}");
    // bbr is reported, and wants fq to pace instead of a timer per socket.
    let cc = line(&r, "net.ipv4.tcp_congestion_control");
    assert!(cc.starts_with("info") && cc.contains("bbr"), "{cc}");
    assert!(
        line(&r, "net.core.default_qdisc").contains("(want fq (congestion control is bbr))"),
        "{r}"
    );
    assert!(r.contains("fix: set net.core.default_qdisc = fq"), "{r}");
    assert!(r.contains("tc qdisc replace dev <nic> root fq"), "{r}");
    assert!(r.contains("2 required checks failed"), "{r}");
    // lo has no device: never checked for queues.
    assert!(!r.contains("lo receive queues"), "{r}");
}

#[test]
fn a_tuned_host_is_ready_with_nothing_to_fix() {
    let (code, r) = tune(&["check", "--workers", "2"], &fixture("tuned-host"));
    assert_eq!(code, 0, "a tuned host must pass:\n{r}");
    assert!(
        !r.lines()
            .any(|l| l.starts_with("FAIL") || l.starts_with("warn")),
        "{r}"
    );
    assert!(line(&r, "eth0 receive queues").contains("4"), "{r}");
    assert!(
        line(&r, "net.ipv4.tcp_congestion_control").starts_with("info"),
        "{r}"
    );
    assert!(
        line(&r, "net.core.default_qdisc").starts_with("ok   net.core.default_qdisc  ")
            && line(&r, "net.core.default_qdisc").contains(" fq (want fq"),
        "{r}"
    );
    assert!(
        line(&r, "eth0 interrupt affinity").contains("4 IRQs on cores 0,1,2,3"),
        "{r}"
    );
    assert!(
        line(&r, "CPU isolation").contains("isolcpus 2,3, nohz_full 2,3"),
        "{r}"
    );
    assert!(
        r.contains("host is ready for Spate (0 recommendations)"),
        "{r}"
    );
}

#[test]
fn apply_dry_run_changes_nothing_and_yes_writes_the_fixes() {
    let root = scratch("apply");
    copy_tree(&fixture("old-host"), &root);
    let somax = root.join("proc/sys/net/core/somaxconn");

    let (code, r) = tune(&["apply", "--dry-run", "--persist"], &root);
    assert_eq!(code, 1, "still not ready (old kernel):\n{r}");
    assert!(r.contains("would set net.core.somaxconn = 4096"), "{r}");
    assert!(r.contains("would set net.core.default_qdisc = fq"), "{r}");
    assert!(
        r.contains("net.core.default_qdisc = fq\n"),
        "persisted: {r}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/net/core/default_qdisc"))
            .unwrap()
            .trim(),
        "pfifo_fast"
    );
    assert!(r.contains("[Service]\nLimitNOFILE=1048576"), "{r}");
    assert_eq!(std::fs::read_to_string(&somax).unwrap().trim(), "128");
    assert!(!root.join("etc/sysctl.d/90-spate.conf").exists());

    let (code, r) = tune(&["apply", "--yes", "--persist"], &root);
    assert_eq!(code, 1, "the kernel cannot be fixed by writes:\n{r}");
    for (file, want) in [
        ("proc/sys/net/core/somaxconn", "4096"),
        ("proc/sys/net/ipv4/ip_local_port_range", "1024 65535"),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "1"),
        ("proc/sys/net/core/default_qdisc", "fq"),
        ("proc/sys/net/ipv4/tcp_congestion_control", "bbr"),
        ("proc/sys/kernel/io_uring_disabled", "0"),
        ("sys/kernel/mm/transparent_hugepage/enabled", "madvise"),
        (
            "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "performance",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(root.join(file)).unwrap().trim(),
            want,
            "{file} after apply --yes:\n{r}"
        );
    }
    let conf = std::fs::read_to_string(root.join("etc/sysctl.d/90-spate.conf")).unwrap();
    assert!(conf.contains("net.core.somaxconn = 4096"), "{conf}");
    assert!(conf.contains("net.core.default_qdisc = fq"), "{conf}");
    assert!(
        !conf.contains("tcp_congestion_control"),
        "congestion control is only reported: {conf}"
    );
    assert!(
        r.contains("by hand: net.core.default_qdisc: the default applies to qdiscs created"),
        "{r}"
    );
    assert!(
        !conf.contains("transparent_hugepage"),
        "sysfs knobs are not sysctls: {conf}"
    );
    assert!(
        r.contains("by hand: kernel: boot a Linux >= 6.1 kernel"),
        "{r}"
    );

    // A second check sees the writes: only the kernel and what needs a
    // restart or the operator remain.
    let (_, again) = tune(&["check"], &root);
    assert!(
        line(&again, "net.core.somaxconn").starts_with("ok"),
        "{again}"
    );
    assert!(
        line(&again, "kernel.io_uring_disabled").starts_with("ok"),
        "{again}"
    );
    assert!(
        line(&again, "net.core.default_qdisc").starts_with("ok"),
        "{again}"
    );
    assert!(line(&again, "kernel ").starts_with("FAIL"), "{again}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn apply_needs_dry_run_or_yes() {
    let (code, r) = tune(&["apply"], &fixture("tuned-host"));
    assert_eq!(
        code, 2,
        "apply without --dry-run or --yes must be a usage error:\n{r}"
    );
    assert!(r.contains("--dry-run"), "{r}");
}

#[test]
fn this_host_runs_the_io_uring_probe_and_is_ready() {
    // The machines Spate is built and tested on run Linux >= 6.1 with
    // io_uring allowed; the probe asks the running kernel.
    let (code, r) = tune(&["check"], Path::new("/"));
    assert_eq!(code, 0, "this host should be ready for Spate:\n{r}");
    for name in [
        "io_uring opcodes",
        "io_uring direct descriptors",
        "multishot receive, buffer rings",
    ] {
        assert!(line(&r, name).starts_with("ok"), "{name}: {r}");
    }
    assert!(
        !r.contains("io_uring probe"),
        "the probe must run on /: {r}"
    );
}

//! Pure parsers of the /proc and /sys files `spate-tune` reads. Each takes
//! the file's text and returns what it means, or `None` when the text is not
//! what the kernel writes there; unit-tested on fixture text.

/// `/proc/<pid>/limits`: (soft, hard) of the row starting with `name`
/// (`Max open files`, `Max locked memory`); `u64::MAX` for `unlimited`.
pub fn limit(text: &str, name: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let rest = line[name.len()..].split_whitespace().collect::<Vec<_>>();
    let value = |w: &str| -> Option<u64> {
        if w == "unlimited" {
            Some(u64::MAX)
        } else {
            w.parse().ok()
        }
    };
    Some((value(rest.first()?)?, value(rest.get(1)?)?))
}

/// A sysctl holding one integer.
pub fn integer(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A sysctl holding one name (`net.ipv4.tcp_congestion_control` = `bbr`,
/// `net.core.default_qdisc` = `fq`): the one word of lowercase letters,
/// digits, `_` or `-`.
pub fn name(text: &str) -> Option<&str> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    ok.then_some(t)
}

/// `net.ipv4.ip_local_port_range`: `low<TAB>high`.
pub fn port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace();
    let lo = it.next()?.parse().ok()?;
    let hi = it.next()?.parse().ok()?;
    if it.next().is_some() || lo > hi {
        return None;
    }
    Some((lo, hi))
}

/// A CPU list as the kernel writes it: `0-3,6,8-9` (empty = none).
pub fn cpu_list(text: &str) -> Option<Vec<u32>> {
    let text = text.trim();
    let mut out = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The value of `key=` on the kernel command line (`/proc/cmdline`).
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `isolcpus=` (flags such as `domain,managed_irq,` before the list are
/// skipped) and `nohz_full=` CPU lists from the kernel command line.
pub fn isolation(cmdline: &str) -> (Vec<u32>, Vec<u32>) {
    let isol = cmdline_value(cmdline, "isolcpus")
        .map(|v| {
            let list = v
                .rsplit(',')
                .take_while(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()));
            let parts: Vec<&str> = list.collect();
            let joined = parts.into_iter().rev().collect::<Vec<_>>().join(",");
            cpu_list(&joined).unwrap_or_default()
        })
        .unwrap_or_default();
    let nohz = cmdline_value(cmdline, "nohz_full")
        .and_then(cpu_list)
        .unwrap_or_default();
    (isol, nohz)
}

/// The selected word of a `[bracketed]` choice file (THP `enabled`, THP
/// `defrag`): `always [madvise] never` → `madvise`.
pub fn selected(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

/// One row of `/proc/interrupts`: IRQ number, per-CPU counts, the name
/// (last column: the device, e.g. `virtio0-input.0`, `eth0-TxRx-3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqRow {
    /// IRQ number.
    pub irq: u32,
    /// Interrupts taken per CPU, in CPU order.
    pub counts: Vec<u64>,
    /// Device/queue name.
    pub name: String,
}

/// `/proc/interrupts`: the numbered rows (NMI, LOC and the like skipped).
pub fn interrupts(text: &str) -> Vec<IrqRow> {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map(|h| {
            h.split_whitespace()
                .filter(|w| w.starts_with("CPU"))
                .count()
        })
        .unwrap_or(0);
    let mut out = Vec::new();
    for line in lines {
        let Some((irq, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(irq) = irq.parse::<u32>() else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < cpus {
            continue;
        }
        let Some(counts) = words[..cpus]
            .iter()
            .map(|w| w.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let name = words.last().map_or("", |w| *w).to_string();
        out.push(IrqRow { irq, counts, name });
    }
    out
}

/// The interrupts of network interface `nic`: rows whose name starts with
/// it (`eth0-TxRx-0`) or, for virtio NICs, `virtioN-input`/`-output` rows
/// given the interface's virtio device name.
pub fn nic_irqs<'a>(rows: &'a [IrqRow], nic: &str, virtio: Option<&str>) -> Vec<&'a IrqRow> {
    rows.iter()
        .filter(|r| {
            r.name == nic
                || r.name.starts_with(&format!("{nic}-"))
                || virtio.is_some_and(|v| {
                    r.name.starts_with(&format!("{v}-input"))
                        || r.name.starts_with(&format!("{v}-output"))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            20000                20000                files     \n\
Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn limits_rows() {
        assert_eq!(limit(LIMITS, "Max open files"), Some((20000, 20000)));
        assert_eq!(limit(LIMITS, "Max locked memory"), Some((8388608, 8388608)));
        assert_eq!(limit(LIMITS, "Max cpu time"), Some((u64::MAX, u64::MAX)));
        assert_eq!(limit(LIMITS, "Max processes"), None);
        assert_eq!(limit("Max open files  many lots", "Max open files"), None);
    }

    #[test]
    fn names() {
        assert_eq!(name("bbr\n"), Some("bbr"));
        assert_eq!(name("pfifo_fast"), Some("pfifo_fast"));
        assert_eq!(name(" fq_codel \n"), Some("fq_codel"));
        assert_eq!(name(""), None);
        assert_eq!(name("reno cubic"), None);
        assert_eq!(name("BBR"), None);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(port_range("60999 32768"), None);
        assert_eq!(port_range("1 2 3"), None);
        assert_eq!(port_range(""), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-3,6,8-9\n"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("a"), None);
    }

    #[test]
    fn command_line_isolation() {
        let c =
            "BOOT_IMAGE=/vmlinuz isolcpus=domain,managed_irq,2-3 nohz_full=2-3 quiet -- isolcpus=9";
        assert_eq!(isolation(c), (vec![2, 3], vec![2, 3]));
        assert_eq!(isolation("quiet isolcpus=1,3"), (vec![1, 3], vec![]));
        assert_eq!(isolation("quiet"), (vec![], vec![]));
        assert_eq!(cmdline_value("a=1 -- b=2", "b"), None);
    }

    #[test]
    fn bracketed_choice() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("[always] madvise never"), Some("always"));
        assert_eq!(selected("always madvise never"), None);
    }

    #[test]
    fn interrupt_rows() {
        let t = "           CPU0       CPU1       \n \
 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n \
 30:        100        200  PCI-MSIX-0000:00:02.0   1-edge      virtio1-input.0\n \
 31:          5          0  PCI-MSIX-0000:00:02.0   2-edge      virtio1-output.0\n \
 40:       9000          0  PCI-MSIX   eth1-TxRx-0\n\
NMI:          0          0   Non-maskable interrupts\n";
        let rows = interrupts(t);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1].counts, vec![100, 200]);
        assert_eq!(rows[1].name, "virtio1-input.0");
        assert_eq!(nic_irqs(&rows, "eth0", Some("virtio1")).len(), 2);
        assert_eq!(nic_irqs(&rows, "eth1", None)[0].irq, 40);
        assert!(nic_irqs(&rows, "eth2", None).is_empty());
    }
}

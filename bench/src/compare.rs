//! `spate-bench compare A.json B.json`: two `spate-bench run` reports side
//! by side, with the ratio B / A of every metric. Each report contributes
//! its last clean step (with --find-max) or its last step; viewer groups
//! are matched by name, then by position.
use std::path::PathBuf;
use std::process::ExitCode;

use crate::run::{GroupReport, Report, StepReport};

/// Arguments of `spate-bench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline report.
    a: PathBuf,
    /// The report compared with it.
    b: PathBuf,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

impl Row {
    /// B / A, when both exist and A is not 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a != 0.0 => Some(b / a),
            (Some(a), Some(b)) if a == 0.0 && b == 0.0 => Some(1.0),
            _ => None,
        }
    }
}

/// A metric's name and how to read it from a group.
type Metric<'a> = (&'a str, &'a dyn Fn(&GroupReport) -> Option<f64>);

fn step(r: &Report) -> Option<&StepReport> {
    if r.find_max {
        r.steps
            .iter()
            .take_while(|s| s.clean)
            .last()
            .or(r.steps.first())
    } else {
        r.steps.last()
    }
}

/// The metrics of two reports, side by side.
pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let mut out = Vec::new();
    let mut push = |m: String, x: Option<f64>, y: Option<f64>| {
        out.push(Row {
            metric: m,
            a: x,
            b: y,
        })
    };
    push(
        "max clean viewers".into(),
        a.max_clean_viewers.map(|v| v as f64),
        b.max_clean_viewers.map(|v| v as f64),
    );
    let (sa, sb) = (step(a), step(b));
    push(
        "viewers (step)".into(),
        sa.map(|s| s.viewers as f64),
        sb.map(|s| s.viewers as f64),
    );
    let server = |s: Option<&StepReport>, f: &dyn Fn(&crate::run::ServerUsage) -> Option<f64>| {
        s.and_then(|s| s.server.as_ref()).and_then(f)
    };
    push(
        "server CPU s/s".into(),
        server(sa, &|u| u.cpu_per_second),
        server(sb, &|u| u.cpu_per_second),
    );
    push(
        "server RSS max MiB".into(),
        server(sa, &|u| u.rss_max.map(|b| b as f64 / 1048576.0)),
        server(sb, &|u| u.rss_max.map(|b| b as f64 / 1048576.0)),
    );
    let per_viewer = |s: Option<&StepReport>| {
        s.and_then(|s| {
            let u = s.server.as_ref()?;
            Some(u.rss_max? as f64 / s.viewers.max(1) as f64 / 1024.0)
        })
    };
    push(
        "server RSS KiB per viewer".into(),
        per_viewer(sa),
        per_viewer(sb),
    );
    let ga = sa.map_or(&[][..], |s| &s.groups[..]);
    let gb = sb.map_or(&[][..], |s| &s.groups[..]);
    for (i, g) in ga.iter().enumerate() {
        let other = gb
            .iter()
            .find(|o| o.name == g.name)
            .or_else(|| gb.get(i).filter(|o| o.protocol == g.protocol));
        let n = &g.name;
        let f = |f: &dyn Fn(&crate::run::GroupReport) -> Option<f64>| (f(g), other.and_then(f));
        let metrics: [Metric<'_>; 12] = [
            ("live viewers", &|g| Some(g.live as f64)),
            ("latency p50 ms", &|g| g.latency.p50),
            ("latency p99 ms", &|g| g.latency.p99),
            ("latency max ms", &|g| g.latency.max),
            ("end-to-end p50 ms", &|g| {
                g.end_to_end.as_ref().and_then(|d| d.p50)
            }),
            ("end-to-end p99 ms", &|g| {
                g.end_to_end.as_ref().and_then(|d| d.p99)
            }),
            ("startup p50 ms", &|g| g.startup.p50),
            ("startup p99 ms", &|g| g.startup.p99),
            ("stalls", &|g| Some(g.stalls as f64)),
            ("stalled viewer-s", &|g| {
                Some(g.stalled_viewer_seconds as f64)
            }),
            ("Mbit/s", &|g| Some(g.bytes_per_s * 8.0 / 1e6)),
            ("errors", &|g| {
                Some(g.errors.values().map(|v| *v as f64).sum())
            }),
        ];
        for (m, get) in metrics {
            let (x, y) = f(get);
            push(format!("{n}: {m}"), x, y);
        }
    }
    out
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 1000.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// `1.57×`; ratios below 0.1 in scientific notation (`1.20e-3×`).
fn ratio_cell(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.1 {
        format!("{x:.2e}×")
    } else {
        format!("{x:.2}×")
    }
}

fn load(p: &PathBuf) -> Result<Report, String> {
    let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&t)
        .map_err(|e| format!("{}: not a `spate-bench run` report: {e}", p.display()))
}

/// Run `spate-bench compare`.
pub fn run(args: CompareArgs) -> Result<ExitCode, String> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let name = |r: &Report, p: &PathBuf| {
        if r.label.is_empty() {
            p.display().to_string()
        } else {
            r.label.clone()
        }
    };
    let (na, nb) = (name(&a, &args.a), name(&b, &args.b));
    let rs = rows(&a, &b);
    let w = rs.iter().map(|r| r.metric.len()).max().unwrap_or(6).max(6);
    println!("{:<w$}  {:>14}  {:>14}  {:>8}", "metric", na, nb, "B/A");
    for r in &rs {
        println!(
            "{:<w$}  {:>14}  {:>14}  {:>8}",
            r.metric,
            cell(r.a),
            cell(r.b),
            r.ratio().map_or("-".into(), ratio_cell)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Dist, ServerUsage};

    fn report(live: usize, p99: f64, rss: u64, clean: &[bool]) -> Report {
        let group = |c: bool| GroupReport {
            name: "http-flv#0".into(),
            protocol: "http-flv".into(),
            url: "http://x/a.flv".into(),
            viewers: live,
            connected: live,
            live,
            latency_kind: "publisher-send-to-receipt".into(),
            latency: Dist {
                count: 10,
                p99: Some(p99),
                p50: Some(p99 / 2.0),
                ..Dist::default()
            },
            end_to_end: None,
            startup: Dist::default(),
            viewer_seconds: 100,
            stalled_viewer_seconds: u64::from(!c),
            stalls: u64::from(!c),
            bytes: 1_000_000,
            bytes_per_s: 125_000.0,
            churned: 0,
            segments: 0,
            init_segments: 0,
            audio_segments: 0,
            range_ignored: 0,
            errors: [("connect".to_string(), 0)].into(),
            timestamps: None,
            first_error: None,
            clean: c,
        };
        Report {
            mode: "scenario".into(),
            label: String::new(),
            scenario: "s.toml".into(),
            target_http: "http://x".into(),
            target_rtmp: "rtmp://x".into(),
            streams: vec![],
            publishers: vec![],
            duration: 10.0,
            warmup: 1.0,
            find_max: clean.len() > 1,
            max_clean_viewers: clean
                .iter()
                .take_while(|c| **c)
                .count()
                .checked_sub(1)
                .map(|i| live * (i + 1)),
            steps: clean
                .iter()
                .enumerate()
                .map(|(i, &c)| StepReport {
                    multiplier: (i + 1) as f64,
                    viewers: live * (i + 1),
                    seconds: 10.0,
                    clean: c,
                    groups: vec![group(c)],
                    server: Some(ServerUsage {
                        pids: vec![1],
                        cpu_seconds: Some(5.0),
                        cpu_per_second: Some(0.5),
                        rss_start: Some(rss),
                        rss_end: Some(rss),
                        rss_max: Some(rss),
                        fds_start: None,
                        fds_end: None,
                    }),
                    max_connected: live * (i + 1),
                    client_fds_max: 0,
                    timeline: vec![],
                })
                .collect(),
            soak: None,
            failure: None,
        }
    }

    fn get<'a>(rows: &'a [Row], m: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.metric == m)
            .unwrap_or_else(|| panic!("{m}: {rows:?}"))
    }

    #[test]
    fn ratios_side_by_side() {
        let a = report(100, 2.0, 100 << 20, &[true]);
        let b = report(300, 1.0, 50 << 20, &[true]);
        let rs = rows(&a, &b);
        assert_eq!(get(&rs, "max clean viewers").ratio(), Some(3.0));
        assert_eq!(get(&rs, "http-flv#0: latency p99 ms").ratio(), Some(0.5));
        assert_eq!(get(&rs, "server RSS max MiB").ratio(), Some(0.5));
        let per = get(&rs, "server RSS KiB per viewer");
        assert!((per.a.unwrap() - 1024.0).abs() < 1e-9);
        assert!((per.ratio().unwrap() - 1.0 / 6.0).abs() < 1e-9);
        // 0 vs 0 is 1×; something vs nothing has no ratio.
        assert_eq!(get(&rs, "http-flv#0: errors").ratio(), Some(1.0));
        assert_eq!(get(&rs, "http-flv#0: startup p50 ms").ratio(), None);
    }

    #[test]
    fn ratio_cells() {
        assert_eq!(ratio_cell(1.0), "1.00×");
        assert_eq!(ratio_cell(0.0012), "1.20e-3×");
        assert_eq!(ratio_cell(0.0), "0.00×");
    }

    #[test]
    fn find_max_reports_use_the_last_clean_step() {
        let a = report(100, 2.0, 1 << 20, &[true, true, false]);
        let b = report(100, 2.0, 1 << 20, &[true]);
        assert_eq!(a.max_clean_viewers, Some(200));
        let rs = rows(&a, &b);
        assert_eq!(get(&rs, "viewers (step)").a, Some(200.0));
        assert_eq!(get(&rs, "max clean viewers").ratio(), Some(0.5));
    }

    #[test]
    fn reports_round_trip_through_json() {
        let a = report(10, 1.0, 1, &[true]);
        let j = serde_json::to_string(&a).unwrap();
        let back: Report = serde_json::from_str(&j).unwrap();
        assert_eq!(rows(&a, &back).len(), rows(&a, &a).len());
        assert!(
            rows(&a, &back)
                .iter()
                .all(|r| r.ratio().is_none_or(|x| x == 1.0))
        );
    }
}

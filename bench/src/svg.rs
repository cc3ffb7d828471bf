//! Hand-written SVG line charts for `spate-bench run` reports: axes with
//! ticks and labels, one polyline per series, a legend. No plotting crate:
//! the output is a few hundred bytes of plain SVG 1.1 any browser shows.
use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// CSS colour.
    pub color: &'static str,
    /// (x, y) points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Plot against the right-hand axis.
    pub right_axis: bool,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Label of the right-hand axis (used when a series asks for it).
    pub y2_label: String,
    pub series: Vec<Series>,
}

const W: f64 = 800.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound ≥ `v` (1, 2, 2.5 or 5 × 10^k) for an axis.
fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_tick(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub fn render(&self) -> String {
        let finite = |s: &Series| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect::<Vec<_>>()
        };
        let all: Vec<(bool, Vec<(f64, f64)>)> = self
            .series
            .iter()
            .map(|s| (s.right_axis, finite(s)))
            .collect();
        let xmax = nice_max(
            all.iter()
                .flat_map(|(_, p)| p.iter().map(|q| q.0))
                .fold(0.0, f64::max),
        );
        let ymax = |right: bool| {
            nice_max(
                all.iter()
                    .filter(|(r, _)| *r == right)
                    .flat_map(|(_, p)| p.iter().map(|q| q.1))
                    .fold(0.0, f64::max),
            )
        };
        let (y1max, y2max) = (ymax(false), ymax(true));
        let has_right = all.iter().any(|(r, _)| *r);
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let px = |x: f64| LEFT + (x / xmax) * pw;
        let py = |y: f64, m: f64| TOP + ph - (y.max(0.0) / m) * ph;

        let mut o = String::new();
        let _ = writeln!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(
            o,
            "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>"
        );
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            W / 2.0,
            esc(&self.title)
        );
        // Axes.
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"black\" points=\"{LEFT},{TOP} {LEFT},{} {},{}\"/>",
            TOP + ph,
            LEFT + pw,
            TOP + ph
        );
        if has_right {
            let _ = writeln!(
                o,
                "<polyline fill=\"none\" stroke=\"black\" points=\"{},{TOP} {},{}\"/>",
                LEFT + pw,
                LEFT + pw,
                TOP + ph
            );
        }
        for i in 0..=5 {
            let f = f64::from(i) / 5.0;
            let x = px(f * xmax);
            let _ = writeln!(
                o,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                TOP + ph,
                TOP + ph + 5.0,
                TOP + ph + 18.0,
                fmt_tick(f * xmax)
            );
            let y = py(f * y1max, y1max);
            let _ = writeln!(
                o,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(f * y1max)
            );
            if has_right {
                let y = py(f * y2max, y2max);
                let _ = writeln!(
                    o,
                    "<text x=\"{}\" y=\"{:.1}\">{}</text>",
                    LEFT + pw + 6.0,
                    y + 4.0,
                    fmt_tick(f * y2max)
                );
            }
        }
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            LEFT + pw / 2.0,
            H - 10.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            o,
            "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        if has_right {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(90 {} {})\">{}</text>",
                W - 14.0,
                TOP + ph / 2.0,
                W - 14.0,
                TOP + ph / 2.0,
                esc(&self.y2_label)
            );
        }
        // Series and legend.
        for (i, (s, (right, pts))) in self.series.iter().zip(&all).enumerate() {
            let m = if *right { y2max } else { y1max };
            let mut p = String::new();
            for (x, y) in pts {
                let _ = write!(p, "{:.1},{:.1} ", px(*x), py(*y, m));
            }
            let _ = writeln!(
                o,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                s.color,
                p.trim_end()
            );
            let ly = TOP + 10.0 + 16.0 * i as f64;
            let _ = writeln!(
                o,
                "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>",
                LEFT + 10.0,
                LEFT + 30.0,
                s.color,
                LEFT + 35.0,
                ly + 4.0,
                esc(&s.name)
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

/// A small well-formedness check of an SVG document as written here:
/// tags balanced and properly nested, every `points`, `x`, `y`… attribute
/// made of finite numbers. Returns what is wrong.
#[cfg_attr(not(test), allow(dead_code))]
pub fn check(svg: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    let mut saw_root = false;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let j = after.find('>').ok_or("unclosed '<'")?;
        let tag = &after[..j];
        rest = &after[j + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .ok_or(format!("</{name}> without an opening tag"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_ascii_whitespace().next().ok_or("empty tag")?;
        if stack.is_empty() {
            if saw_root || name != "svg" {
                return Err(format!("<{name}> outside the <svg> root"));
            }
            saw_root = true;
        }
        // Attributes: name="value" pairs.
        let mut attrs = &body[name.len()..];
        while let Some(eq) = attrs.find("=\"") {
            let key = attrs[..eq].trim();
            let v_start = eq + 2;
            let v_end = attrs[v_start..]
                .find('"')
                .ok_or(format!("<{name}>: unterminated attribute {key}"))?;
            let value = &attrs[v_start..v_start + v_end];
            if matches!(
                key,
                "x" | "y" | "x1" | "y1" | "x2" | "y2" | "width" | "height" | "points"
            ) {
                for n in value.split([' ', ',']).filter(|s| !s.is_empty()) {
                    let f: f64 = n
                        .parse()
                        .map_err(|_| format!("<{name}> {key}: {n:?} is not a number"))?;
                    if !f.is_finite() {
                        return Err(format!("<{name}> {key}: {n} is not finite"));
                    }
                }
            }
            attrs = &attrs[v_start + v_end + 1..];
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    if !saw_root {
        return Err("no <svg> element".into());
    }
    if let Some(t) = stack.pop() {
        return Err(format!("<{t}> never closed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>) -> Chart {
        Chart {
            title: "latency <p99> & p50".into(),
            x_label: "seconds".into(),
            y_label: "ms".into(),
            y2_label: "stalls".into(),
            series: vec![
                Series {
                    name: "p50".into(),
                    color: "#1f77b4",
                    points: points.clone(),
                    right_axis: false,
                },
                Series {
                    name: "stalls".into(),
                    color: "#d62728",
                    points,
                    right_axis: true,
                },
            ],
        }
    }

    #[test]
    fn renders_well_formed() {
        let svg = chart(vec![(0.0, 1.0), (1.0, 2.5), (2.0, f64::NAN), (3.0, 0.3)]).render();
        check(&svg).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("&lt;p99&gt; &amp;"));
        assert!(!svg.contains("NaN"));
        // Empty series still make a valid document.
        check(&chart(Vec::new()).render()).unwrap();
    }

    #[test]
    fn checker_catches_breakage() {
        assert!(check("<svg><g></svg>").is_err());
        assert!(check("<svg><polyline points=\"1,NaN\"/></svg>").is_err());
        assert!(check("<svg><polyline points=\"1,inf\"/></svg>").is_err());
        assert!(check("<svg x=\"1").is_err());
        assert!(check("<g/>").is_err());
        assert!(check("<svg></svg><svg></svg>").is_err());
        assert!(check("<svg><line x1=\"1\" y1=\"2\"/></svg>").is_ok());
    }

    #[test]
    fn nice_bounds() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(101.0), 200.0);
        assert_eq!(nice_max(0.018), 0.02);
    }
}

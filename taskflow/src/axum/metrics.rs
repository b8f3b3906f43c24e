//! `GET /metrics`: the counters as Prometheus text.

use std::fmt::Write as _;

use super::disconnect::Streams;
use crate::engine::TaskFlow;
use crate::metrics::Kind;

/// The flow's counters and gauges in the Prometheus text format.
pub(crate) fn prometheus_text(flow: &TaskFlow) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: Kind, help: &str, value: u64| {
        let kind = kind.as_str();
        let _ = writeln!(out, "# HELP taskflow_{name} {help}");
        let _ = writeln!(out, "# TYPE taskflow_{name} {kind}");
        let _ = writeln!(out, "taskflow_{name} {value}");
    };
    for m in flow.metrics().exported() {
        metric(m.name, m.kind, m.help, m.value);
    }
    let open = flow.port().extension::<Streams>().open_streams();
    metric(
        "active_streams",
        Kind::Gauge,
        "Open SSE streams.",
        u64::try_from(open).unwrap_or(u64::MAX),
    );
    let h = flow.histograms();
    histogram(
        &mut out,
        "wal_commit_seconds",
        "Time per durable commit.",
        &h.commit_micros,
        |micros| format!("{}", micros as f64 / 1e6),
    );
    histogram(
        &mut out,
        "wal_group_size",
        "Write batches per durable commit.",
        &h.group_size,
        |n| n.to_string(),
    );
    out
}

/// One histogram as Prometheus text: cumulative `_bucket{le="..."}` series ending in `+Inf`,
/// then `_sum` and `_count` (`unit` renders a bound or the sum in the series' unit).
fn histogram<const B: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    h: &crate::metrics::HistogramSnapshot<B>,
    unit: impl Fn(u64) -> String,
) {
    let _ = writeln!(out, "# HELP taskflow_{name} {help}");
    let _ = writeln!(out, "# TYPE taskflow_{name} histogram");
    for (bound, below) in h.bounds.iter().zip(h.cumulative()) {
        let _ = writeln!(
            out,
            "taskflow_{name}_bucket{{le=\"{}\"}} {below}",
            unit(*bound)
        );
    }
    let count = h.count();
    let _ = writeln!(out, "taskflow_{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "taskflow_{name}_sum {}", unit(h.sum));
    let _ = writeln!(out, "taskflow_{name}_count {count}");
}

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
    out
}

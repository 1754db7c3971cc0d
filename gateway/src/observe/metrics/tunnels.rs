//! Broker tunnel metrics. Labels are bounded: tenant and tunnel names come from the config,
//! handshake failure reasons and TCP connection results from fixed sets.
//!
//! Gauges and byte counters are brought up to date from the tunnel registry just before a
//! scrape ([`TunnelMetrics::sync`]), as the audit counters are: the request path and the
//! tunnel's data path only touch the broker's own atomics.

use std::collections::HashSet;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{label_values, register};

/// The tunnel families of one process.
#[derive(Clone)]
pub(crate) struct TunnelMetrics {
    agents: IntGaugeVec,
    reconnects: IntCounterVec,
    streams_open: IntGaugeVec,
    bytes: IntCounterVec,
    handshake_failures: IntCounterVec,
    tcp_connections: IntCounterVec,
}

/// One tunnel's live numbers, as the registry reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TunnelSample<'a> {
    /// The owning tenant.
    pub(crate) tenant: &'a str,
    /// The tunnel.
    pub(crate) tunnel: &'a str,
    /// Connected agents.
    pub(crate) agents: u64,
    /// Streams open on them now.
    pub(crate) streams_open: u64,
    /// Stream bytes sent to agents since the process started.
    pub(crate) bytes_to_agent: u64,
    /// Stream bytes received from agents since the process started.
    pub(crate) bytes_from_agent: u64,
}

// === impl TunnelMetrics ===

impl TunnelMetrics {
    /// Registers the tunnel families in `registry`.
    pub(super) fn register(registry: &Registry) -> Self {
        let tenant_tunnel = &["tenant", "tunnel"];
        Self {
            agents: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "portcullis_tunnel_agents",
                        "Agents connected to this gateway, by tunnel.",
                    ),
                    tenant_tunnel,
                ),
            ),
            reconnects: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "portcullis_tunnel_reconnects_total",
                        "Agent connections accepted from an agent id this tunnel had seen before.",
                    ),
                    tenant_tunnel,
                ),
            ),
            streams_open: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "portcullis_tunnel_streams_open",
                        "Streams (upstream connections and TCP route connections) open on the tunnel's agents.",
                    ),
                    tenant_tunnel,
                ),
            ),
            bytes: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "portcullis_tunnel_bytes_total",
                        "Stream payload bytes through the tunnel, by direction (to_agent, from_agent).",
                    ),
                    &["tenant", "tunnel", "direction"],
                ),
            ),
            handshake_failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "portcullis_tunnel_handshake_failures_total",
                        "Agent connections that did not become a session, by reason (bad_token, revoked, tls, timeout, …).",
                    ),
                    &["reason"],
                ),
            ),
            tcp_connections: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "portcullis_tcp_route_connections_total",
                        "Connections to TCP routes, by route and how they ended (closed, caller_denied, tunnel_offline, agent_refused, …).",
                    ),
                    &["route", "result"],
                ),
            ),
        }
    }

    /// Counts an agent reconnecting.
    pub(crate) fn reconnected(&self, tenant: &str, tunnel: &str) {
        self.reconnects.with_label_values(&[tenant, tunnel]).inc();
    }

    /// Counts a failed handshake; `reason` is one of the broker's bounded reason labels.
    pub(crate) fn handshake_failed(&self, reason: &str) {
        self.handshake_failures.with_label_values(&[reason]).inc();
    }

    /// Counts a TCP route connection that ended with `result`.
    pub(crate) fn tcp_connection(&self, route: &str, result: &str) {
        self.tcp_connections
            .with_label_values(&[route, result])
            .inc();
    }

    /// Sets the gauges and brings the byte counters up to `samples` (one per configured
    /// tunnel); series of tunnels no longer configured are removed.
    pub(crate) fn sync(&self, samples: &[TunnelSample<'_>]) {
        let keep: HashSet<(&str, &str)> = samples.iter().map(|s| (s.tenant, s.tunnel)).collect();
        for s in samples {
            let labels = [s.tenant, s.tunnel];
            self.agents
                .with_label_values(&labels)
                .set(i64::try_from(s.agents).unwrap_or(i64::MAX));
            self.streams_open
                .with_label_values(&labels)
                .set(i64::try_from(s.streams_open).unwrap_or(i64::MAX));
            // Exported from the start at 0, so that `increase()` sees the first reconnect.
            let _ = self.reconnects.with_label_values(&labels);
            for (direction, total) in [
                ("to_agent", s.bytes_to_agent),
                ("from_agent", s.bytes_from_agent),
            ] {
                let counter = self
                    .bytes
                    .with_label_values(&[s.tenant, s.tunnel, direction]);
                let exported = counter.get();
                if total > exported {
                    counter.inc_by(total - exported);
                }
            }
        }
        for [tenant, tunnel] in label_values(&self.agents, &["tenant", "tunnel"]) {
            if !keep.contains(&(tenant.as_str(), tunnel.as_str())) {
                let _ = self.agents.remove_label_values(&[&tenant, &tunnel]);
                let _ = self.streams_open.remove_label_values(&[&tenant, &tunnel]);
                let _ = self.reconnects.remove_label_values(&[&tenant, &tunnel]);
                for direction in ["to_agent", "from_agent"] {
                    let _ = self
                        .bytes
                        .remove_label_values(&[&tenant, &tunnel, direction]);
                }
            }
        }
    }
}

impl std::fmt::Debug for TunnelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;

    fn sample(agents: u64, to_agent: u64) -> TunnelSample<'static> {
        TunnelSample {
            tenant: "acme",
            tunnel: "acme-dc1",
            agents,
            streams_open: 2,
            bytes_to_agent: to_agent,
            bytes_from_agent: 7,
        }
    }

    #[test]
    fn sync_sets_gauges_never_lowers_counters_and_forgets_removed_tunnels() {
        let metrics = Metrics::new("test");
        let tunnels = metrics.tunnels();
        tunnels.sync(&[sample(2, 1000)]);
        let text = metrics.encode();
        for line in [
            r#"portcullis_tunnel_agents{tenant="acme",tunnel="acme-dc1"} 2"#,
            r#"portcullis_tunnel_streams_open{tenant="acme",tunnel="acme-dc1"} 2"#,
            r#"portcullis_tunnel_bytes_total{direction="to_agent",tenant="acme",tunnel="acme-dc1"} 1000"#,
            r#"portcullis_tunnel_bytes_total{direction="from_agent",tenant="acme",tunnel="acme-dc1"} 7"#,
            r#"portcullis_tunnel_reconnects_total{tenant="acme",tunnel="acme-dc1"} 0"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // A total read a moment low (a session between two counters) never lowers a counter.
        tunnels.sync(&[sample(1, 900)]);
        let text = metrics.encode();
        assert!(text.contains(r#"portcullis_tunnel_agents{tenant="acme",tunnel="acme-dc1"} 1"#));
        assert!(text.contains(
            r#"portcullis_tunnel_bytes_total{direction="to_agent",tenant="acme",tunnel="acme-dc1"} 1000"#
        ));
        tunnels.reconnected("acme", "acme-dc1");
        tunnels.handshake_failed("bad_token");
        tunnels.tcp_connection("acme-db", "closed");
        let text = metrics.encode();
        assert!(text
            .contains(r#"portcullis_tunnel_reconnects_total{tenant="acme",tunnel="acme-dc1"} 1"#));
        assert!(
            text.contains(r#"portcullis_tunnel_handshake_failures_total{reason="bad_token"} 1"#)
        );
        assert!(text.contains(
            r#"portcullis_tcp_route_connections_total{result="closed",route="acme-db"} 1"#
        ));
        // The tunnel is no longer configured: its series go.
        tunnels.sync(&[]);
        let text = metrics.encode();
        assert!(!text.contains("acme-dc1"), "{text}");
    }
}

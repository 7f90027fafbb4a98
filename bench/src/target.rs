//! What is measured: the targets of the tables, by key (as `--targets` names them) and
//! by label (as the tables show them).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Direct,
    Gateway,
    Gateway3212,
    GatewayBaseline,
    /// The gateway with `[telemetry] metrics = false` and no traces.
    GatewayQuiet,
    /// The gateway with metrics and 1 % of traces exported over OTLP.
    GatewayTraced,
    Nginx1,
    Nginx2,
    Haproxy1,
    Haproxy2,
}

impl Target {
    /// Targets of the main table, in its row order (the 3,212-route gateway is measured
    /// in the route-scale check only).
    pub const MEASURED: [Self; 7] = [
        Self::Direct,
        Self::Gateway,
        Self::GatewayBaseline,
        Self::Nginx1,
        Self::Nginx2,
        Self::Haproxy1,
        Self::Haproxy2,
    ];

    /// What the gateway is compared with: plain mTLS gRPC routers in front of the node.
    pub const PEERS: [Self; 4] = [Self::Nginx1, Self::Nginx2, Self::Haproxy1, Self::Haproxy2];

    pub fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
            Self::Gateway3212 => "gateway3212",
            Self::GatewayBaseline => "gateway-baseline",
            Self::GatewayQuiet => "gateway-quiet",
            Self::GatewayTraced => "gateway-traced",
            Self::Nginx1 => "nginx1",
            Self::Nginx2 => "nginx2",
            Self::Haproxy1 => "haproxy1",
            Self::Haproxy2 => "haproxy2",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
            Self::Gateway3212 => "gateway (3212 routes)",
            Self::GatewayBaseline => "gateway (baseline)",
            Self::GatewayQuiet => "gateway, telemetry off",
            Self::GatewayTraced => "gateway, metrics + 1 % traces",
            Self::Nginx1 => "nginx 1 worker",
            Self::Nginx2 => "nginx 2 workers",
            Self::Haproxy1 => "haproxy 1 thread",
            Self::Haproxy2 => "haproxy 2 threads",
        }
    }
}

//! Admission's figures in `/metrics`, read at scrape time from its atomics (no per-call
//! metric work): `tongban_gateway_busy_ratio` (the workers' measured busy share over the
//! last window, `crate::saturation`), `tongban_gateway_congested` (1 while origins above
//! an equal share are held back) and `tongban_gateway_streams_refused_total{origin}`
//! (streams of that province refused at the HTTP/2 level, REFUSED_STREAM) and
//! `tongban_gateway_connections_held_total{origin}` (times one of its connections
//! stopped taking new streams).

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::admission::Admission;

pub const BUSY_RATIO: &str = "tongban_gateway_busy_ratio";
pub const CONGESTED: &str = "tongban_gateway_congested";
/// As registered; a scrape adds `_total`.
pub const STREAMS_REFUSED: &str = "tongban_gateway_streams_refused";
/// As registered; a scrape adds `_total`.
pub const CONNECTIONS_HELD: &str = "tongban_gateway_connections_held";

#[derive(Debug)]
pub struct AdmissionMetrics(pub Arc<Admission>);

impl Collector for AdmissionMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let saturation = self.0.saturation();
        let busy = ConstGauge::new(saturation.busy_ratio());
        busy.encode(encoder.encode_descriptor(
            BUSY_RATIO,
            "Share of the gateway's worker time spent busy over the last 50 ms window (a worker waiting for a CPU mid-work counts as busy)",
            None,
            busy.metric_type(),
        )?)?;
        let congested = ConstGauge::new(i64::from(saturation.congested()));
        congested.encode(encoder.encode_descriptor(
            CONGESTED,
            "1 while the gateway is measured busy past limits.busy_threshold (and for a second after): origins past their fair allowance of new calls are refused at the HTTP/2 level",
            None,
            congested.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            STREAMS_REFUSED,
            "Streams of the origin province refused with REFUSED_STREAM, before any call was built, while it was over its share of a congested gateway and its holding connections were refused the bytes to hold",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (slot, count) in self.0.deferrals() {
            let origin = format!("{slot:02}");
            ConstCounter::new(count)
                .encode(family.encode_family(&[("origin", origin.as_str())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            CONNECTIONS_HELD,
            "Times a connection of the origin province stopped taking new streams (they wait in HTTP/2, the connection's window charged to the origin) while it was over its share of a congested gateway",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (slot, count) in self.0.holds() {
            let origin = format!("{slot:02}");
            ConstCounter::new(count)
                .encode(family.encode_family(&[("origin", origin.as_str())])?)?;
        }
        Ok(())
    }
}

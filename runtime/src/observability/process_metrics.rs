//! Metrics every process serves, read at scrape time: its own certificates' remaining
//! validity (so an expiring certificate alerts before it breaks the federation), how the
//! TLS handshakes at its federation listener ended (`tongban_federation_handshakes_total
//! {outcome}`: connections closed on arrival for a full listener or source, ClientHellos
//! and handshakes timed out, see `serving::handshakes`), audit records the trail lost
//! (`tongban_audit_records_dropped_total{reason}`: `queue_full` or `write_error`, see
//! `audit::writer`; each also stated in the trail by a gap marker), and the standard `process_*`
//! gauges Prometheus' client libraries export (memory, CPU, start time), read from
//! `/proc/self` on Linux.
//!
//! The certificate files are read at each scrape, so a reissued certificate shows as
//! soon as it is on disk.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{audit::writer::process_losses, serving::handshakes::handshake_counts};

/// The certificate-expiry gauge's name (the gateway's console reads it).
pub const CERTIFICATE_EXPIRY: &str = "tongban_certificate_expiry_seconds";

/// The handshake counter's name (a scrape shows it with `_total`).
pub const FEDERATION_HANDSHAKES: &str = "tongban_federation_handshakes";

/// The audit-loss counter's name (a scrape shows it with `_total`).
pub const AUDIT_RECORDS_DROPPED: &str = "tongban_audit_records_dropped";

/// The scrape-time collector; register it with
/// `Registry::register_collector(Box::new(...))`.
#[derive(Debug)]
pub struct ProcessCollector {
    /// Certificate files by name (`federation`): the leaf's expiry is reported.
    certificates: Vec<(String, PathBuf)>,
    started: SystemTime,
}

impl ProcessCollector {
    pub fn new(certificates: Vec<(String, PathBuf)>) -> Self {
        Self {
            certificates,
            started: SystemTime::now(),
        }
    }
}

/// Seconds from now until the first certificate in `path` stops being valid (negative
/// once it has expired); `None` when it cannot be read.
pub fn seconds_until_expiry(path: &std::path::Path) -> Option<f64> {
    let pem = std::fs::read(path).ok()?;
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(not_after as f64 - now)
}

/// Resident memory and CPU time of this process, from `/proc/self` (Linux).
fn proc_self() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name, in
    // clock ticks; Linux reports them at USER_HZ, which is 100 on every architecture.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((rss_kib * 1024.0, ticks / 100.0))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut expiry = Vec::new();
        for (name, path) in &self.certificates {
            if let Some(seconds) = seconds_until_expiry(path) {
                expiry.push((name, seconds));
            }
        }
        if !expiry.is_empty() {
            let gauge = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(
                CERTIFICATE_EXPIRY,
                "Seconds until this process's own certificate expires (negative once expired)",
                None,
                gauge.metric_type(),
            )?;
            for (name, seconds) in expiry {
                let labels = [("certificate", name.as_str())];
                ConstGauge::new(seconds).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut handshakes = encoder.encode_descriptor(
            FEDERATION_HANDSHAKES,
            "TLS handshakes at this process's federation listener, by how they ended",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (ended, n) in handshake_counts() {
            let labels = [("outcome", ended.label())];
            ConstCounter::new(n).encode(handshakes.encode_family(&labels)?)?;
        }
        let mut audit = encoder.encode_descriptor(
            AUDIT_RECORDS_DROPPED,
            "Audit records this process's trail lost, by why (each gap is also marked in the trail)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        let (queue_full, write_error) = process_losses();
        for (reason, n) in [("queue_full", queue_full), ("write_error", write_error)] {
            ConstCounter::new(n).encode(audit.encode_family(&[("reason", reason)])?)?;
        }
        if let Some((rss, cpu)) = proc_self() {
            let rss = ConstGauge::new(rss);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                rss.metric_type(),
            )?)?;
            let cpu = ConstCounter::new(cpu);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Ok(start) = self.started.duration_since(UNIX_EPOCH) {
            let start = ConstGauge::new(start.as_secs_f64());
            start.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                None,
                start.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_certificate_expiry_and_process_gauges() {
        let dir = std::env::temp_dir().join(format!("tongban-pm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = crate::trust::pki::DevCa::generate("test CA").unwrap();
        let leaf = ca
            .issue(
                &crate::trust::identity::PeerIdentity::Gateway,
                std::time::Duration::from_secs(3 * 86_400),
            )
            .unwrap();
        let (cert, _) = crate::trust::pki::write_leaf(
            &dir,
            &crate::trust::identity::PeerIdentity::Gateway,
            &leaf,
        )
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new(vec![(
            "federation".into(),
            cert,
        )])));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("tongban_certificate_expiry_seconds{certificate=\"federation\"}")
            })
            .unwrap_or_else(|| panic!("{text}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            seconds > 2.9 * 86_400.0 && seconds <= 3.0 * 86_400.0,
            "{line}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(
            text.contains("tongban_federation_handshakes_total{outcome=\"refused_per_source\"} "),
            "{text}"
        );
        assert!(
            text.contains("tongban_audit_records_dropped_total{reason=\"queue_full\"} "),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

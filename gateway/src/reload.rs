//! Reloading the registry and the TLS files while serving, each part on its own: a bad
//! registry edit must not hold back a new revocation list, nor a bad TLS file a
//! registry change. A registry that would remove more than
//! `[reload] max_regions_dropped_share` of the registered regions (an empty one above
//! all) is refused unless an operator forces it: a file rewritten in place by mistake
//! must not cut the federation off. Every refusal is logged and counted.

use std::{collections::HashSet, sync::Arc};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry as Metrics,
};
use tongban_runtime::{
    process::config,
    trust::tls::{TlsInForce, TlsRead},
};

use crate::{
    config::GatewayConfig,
    recognition::Recognition,
    registry::{ClientTls, Registry, RegistryFile, SharedRegistry},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    part: &'static str,
    reason: &'static str,
}

/// `tongban_gateway_reload_refusals_total{part, reason}`.
#[derive(Clone, Debug, Default)]
pub struct ReloadMetrics {
    refusals: Family<RefusalLabels, Counter>,
}

impl ReloadMetrics {
    /// The counter, registered in `metrics`.
    pub fn new(metrics: &mut Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "tongban_gateway_reload_refusals",
            "Reload parts refused, the previous kept in force: part (registry, tls) and reason (invalid; drops_regions: would remove too many registered regions, or all)",
            this.refusals.clone(),
        );
        // At zero from the start, so the alert's series exists before any refusal.
        for (part, reason) in [
            ("registry", "invalid"),
            ("registry", "drops_regions"),
            ("tls", "invalid"),
        ] {
            this.refusals
                .get_or_create(&RefusalLabels { part, reason })
                .inc_by(0);
        }
        this
    }

    fn count(&self, part: &'static str, refused: &Refused) {
        let reason = match refused {
            Refused::Invalid(_) => "invalid",
            Refused::DropsRegions(_) => "drops_regions",
        };
        self.refusals
            .get_or_create(&RefusalLabels { part, reason })
            .inc();
    }
}

/// Why one part of a reload was refused (what was in force stays).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}; POST /reload?force=true applies it")]
    DropsRegions(String),
}

/// What one reload does: reads both parts, applies each that is valid.
pub struct Reloader {
    pub registry: SharedRegistry,
    pub config: GatewayConfig,
    pub tls: Arc<TlsInForce>,
    pub recognition: Arc<Recognition>,
    pub metrics: ReloadMetrics,
}

impl Reloader {
    /// One reload (`force`: an operator's, past the drop check). `Ok` says what was
    /// applied; `Err` says the same and which part was refused and why.
    pub fn reload(&self, force: bool) -> Result<String, String> {
        let previous = self.registry.current();
        let tls = self.read_tls();
        let client = match &tls {
            Ok((_, client)) => Some(client.clone()),
            Err(_) => previous.client_tls(),
        };
        let (next, registry_said) = self.next_registry(&previous, client, tls.is_ok(), force);
        if let Some(next) = next {
            self.registry.replace(next);
            self.recognition.registry_changed(&self.registry.current());
        }
        let tls_said = match tls {
            Ok((read, _)) => Ok(format!(
                "certificates and revocation lists applied ({} revoked serials)",
                self.tls.replace(read)
            )),
            Err(refused) => {
                self.refuse("tls", &refused);
                Err(format!(
                    "certificates and revocation lists refused, those in force kept: {refused}"
                ))
            }
        };
        let both = format!(
            "{}; {}",
            registry_said.as_ref().unwrap_or_else(|e| e),
            tls_said.as_ref().unwrap_or_else(|e| e)
        );
        match (registry_said, tls_said) {
            (Ok(_), Ok(_)) => Ok(both),
            _ => Err(both),
        }
    }

    /// The TLS files read whole, and the client side the registry's pools take.
    fn read_tls(&self) -> Result<(TlsRead, ClientTls), Refused> {
        let files = &self.config.tls;
        let invalid = |e: tongban_runtime::trust::tls::TlsError| Refused::Invalid(e.to_string());
        let read = files.read_all().map_err(invalid)?;
        let fingerprint = files.fingerprint().map_err(invalid)?;
        let client = files.client_rustls_config().map_err(invalid)?;
        Ok((read, (fingerprint, client)))
    }

    /// The registry to put in force (if any) and what to say of it. A refused file
    /// keeps the previous registry's entries, rebuilt with new TLS files when those
    /// are good so its pools present and check what is now in force.
    fn next_registry(
        &self,
        previous: &Registry,
        client: Option<ClientTls>,
        tls_changed: bool,
        force: bool,
    ) -> (Option<Registry>, Result<String, String>) {
        let Some(client) = client else {
            let refused = Refused::Invalid("no TLS files to build its pools with".into());
            self.refuse("registry", &refused);
            return (None, Err(format!("registry refused: {refused}")));
        };
        let path = &self.config.registry;
        let build = |file: &RegistryFile| {
            Registry::build_with(
                file,
                path,
                client.clone(),
                &self.config.upstream,
                Some(previous),
            )
            .map_err(|e| Refused::Invalid(e.to_string()))
        };
        let loaded = config::load::<RegistryFile>(path)
            .map_err(|e| Refused::Invalid(e.to_string()))
            .and_then(|file| {
                let share = self.config.reload.max_regions_dropped_share;
                if !force {
                    check_drops(previous, &file, share)?;
                }
                build(&file)
            });
        match loaded {
            Ok(next) => {
                let said = format!("registry applied ({} registered prefixes)", next.len());
                (Some(next), Ok(said))
            }
            Err(refused) => {
                self.refuse("registry", &refused);
                let said = format!("registry refused, the previous kept: {refused}");
                let kept = tls_changed.then(|| build(previous.file()).ok()).flatten();
                (kept, Err(said))
            }
        }
    }

    fn refuse(&self, part: &'static str, refused: &Refused) {
        self.metrics.count(part, refused);
        tracing::warn!(part, %refused, "reload part refused; what was in force is kept");
    }
}

/// Refuses a registry with no region (unless none was registered) or one that removes
/// more than `share` of the registered prefixes.
fn check_drops(previous: &Registry, next: &RegistryFile, share: f64) -> Result<(), Refused> {
    let total = previous.len();
    if next.regions.is_empty() && total > 0 {
        return Err(Refused::DropsRegions(
            "the new registry has no region: every member would be refused".into(),
        ));
    }
    let kept: HashSet<&str> = next.regions.iter().map(|r| r.prefix.as_str()).collect();
    let dropped = previous
        .routes()
        .filter(|r| !kept.contains(r.prefix.as_str()))
        .count();
    if total > 0 && dropped as f64 > share * total as f64 {
        return Err(Refused::DropsRegions(format!(
            "the new registry removes {dropped} of the {total} registered regions, more than reload.max_regions_dropped_share ({share})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegionEntry;

    fn file(prefixes: &[&str]) -> RegistryFile {
        RegistryFile {
            regions: prefixes
                .iter()
                .map(|p| RegionEntry {
                    prefix: (*p).into(),
                    endpoints: vec!["https://127.0.0.1:1".into()],
                    identity: None,
                    issuer_keys: Vec::new(),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn an_empty_registry_or_one_dropping_too_many_regions_is_refused() {
        tongban_runtime::trust::tls::install_crypto_provider();
        let roots = rustls::RootCertStore::empty();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let four = ["11", "31", "44", "51"];
        let previous = Registry::build_with(
            &file(&four),
            std::path::Path::new("registry.toml"),
            ([0; 32], Arc::new(client)),
            &Default::default(),
            None,
        )
        .unwrap();
        let refused = |next: &[&str]| check_drops(&previous, &file(next), 0.25).err();
        assert!(matches!(refused(&[]), Some(Refused::DropsRegions(_))));
        assert!(refused(&["11", "31", "44"]).is_none(), "1 of 4 is 25%");
        assert!(refused(&["11", "31", "44", "51", "12"]).is_none());
        let two = refused(&["11", "31"]).unwrap().to_string();
        assert!(
            two.contains("removes 2 of the 4") && two.contains("force"),
            "{two}"
        );
        // Nothing registered yet: an empty file drops nothing.
        assert!(check_drops(&Registry::default(), &file(&[]), 0.25).is_ok());
    }
}

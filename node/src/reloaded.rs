//! What a node reloads while it runs (SIGHUP, a changed file, `POST /reload`): its TLS
//! files, its issuer keys, its copy of the registry and its calendar, each on its own.

use std::sync::Arc;

use tongban_runtime::{
    process::reload::{ReloadTriggers, serve_reloads},
    process::shutdown::ShutdownSignal,
    trust::tls::TlsInForce,
};

use tongban_proto::rules::calendar::working_days::Calendar;

use crate::{
    calendar::{CalendarConfig, describe},
    config::NodeConfig,
    in_force::InForce,
    issuer::{IssuerKeys, SharedIssuerKeys},
    peers::{PeerKeys, SharedPeerKeys},
};

/// What a reload replaces: the TLS files (certificates, CA, revocation list), the
/// issuer keys and the peers' registry, each on its own, so a bad key file does not
/// hold back a new revocation list nor the reverse.
pub struct Reloaded {
    pub tls: tongban_runtime::trust::tls::TlsFiles,
    pub tls_in_force: Arc<TlsInForce>,
    /// The config file, read again for its `[issuer]` keys (a key added, or replaced
    /// after a compromise); `None`: the keys stay as started.
    pub config: Option<std::path::PathBuf>,
    pub keys: SharedIssuerKeys,
    /// The peers' registry as started; a reloaded config names the one read instead.
    pub peers_registry: std::path::PathBuf,
    pub peers: SharedPeerKeys,
    /// The calendar's section as started; a reloaded config names the one read instead.
    pub calendar_config: CalendarConfig,
    pub calendar: InForce<Calendar>,
}

impl Reloaded {
    fn reload(&self) -> Result<String, String> {
        let tls = self.tls.read_all().map(|read| {
            let serials = self.tls_in_force.replace(read);
            format!("certificates; {serials} revoked serials")
        });
        let config = self
            .config
            .as_ref()
            .map(|path| NodeConfig::load(path).map_err(|e| e.to_string()));
        let keys = config.as_ref().map(|config| {
            let config = config.as_ref().map_err(Clone::clone)?;
            let keys = IssuerKeys::load(&config.issuer).map_err(|e| e.to_string())?;
            let ids = keys.ids().join(", ");
            self.keys.replace(keys);
            Ok::<_, String>(format!("issuer keys [{ids}]"))
        });
        let peers_registry = match &config {
            Some(Ok(config)) => &config.peers.registry,
            _ => &self.peers_registry,
        };
        // Refused whole (an empty or broken copy): the keys in force stay.
        let peers = PeerKeys::load(peers_registry).map(|peers| {
            let (regions, keys) = peers.counts();
            self.peers.replace(peers);
            format!("peers' registry: {regions} regions, {keys} keys")
        });
        let calendar_config = match &config {
            Some(Ok(config)) => &config.calendar,
            _ => &self.calendar_config,
        };
        // Refused whole (a file that does not hold together): the calendar in force stays.
        let calendar = calendar_config.load().map(|calendar| {
            let done = describe(&calendar);
            self.calendar.replace(calendar);
            done
        });
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        match tls {
            Ok(done) => applied.push(done),
            Err(e) => refused.push(format!("certificates: {e}")),
        }
        match keys {
            Some(Ok(done)) => applied.push(done),
            Some(Err(e)) => refused.push(format!("issuer keys: {e}")),
            None => {}
        }
        match peers {
            Ok(done) => applied.push(done),
            Err(e) => refused.push(format!("peers' registry: {e}")),
        }
        match calendar {
            Ok(done) => applied.push(done),
            Err(e) => refused.push(format!("calendar: {e}")),
        }
        if refused.is_empty() {
            Ok(applied.join("; "))
        } else {
            Err(format!(
                "{} (applied: {})",
                refused.join("; "),
                if applied.is_empty() {
                    "nothing".to_owned()
                } else {
                    applied.join("; ")
                }
            ))
        }
    }
}

/// Acts on reload requests (SIGHUP, a changed file, `POST /reload`) until shutdown.
pub async fn reload_on_request(
    triggers: ReloadTriggers,
    reloaded: Reloaded,
    shutdown: ShutdownSignal,
) {
    serve_reloads(triggers, shutdown, || reloaded.reload()).await;
}

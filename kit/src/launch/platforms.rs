//! The province platforms of the nodes that stand in front of one over HTTP: their
//! folders and configs written (`config::platform`), each started on ports of its own.

use std::collections::BTreeMap;

use tongban_proto::rules::region::RegionPrefix;

use crate::{
    config::platform::PlatformPlan,
    error::KitError,
    launch::sockets::{bind_loopback, local_addr},
    platform::RunningPlatform,
    spec::FederationSpec,
};

/// Writes and starts the province platform of every prefix in `spec.http_platforms`.
pub(crate) async fn start(
    spec: &FederationSpec,
) -> Result<BTreeMap<String, RunningPlatform>, KitError> {
    let mut platforms = BTreeMap::new();
    for prefix in &spec.http_platforms {
        let region = RegionPrefix::parse(prefix).map_err(|e| KitError::Other(e.to_string()))?;
        // Ports of its own, released for the platform to bind (and to bind again after
        // a restart: the config names them).
        let (contract, clerk) = (bind_loopback().await?, bind_loopback().await?);
        let (listen, clerk_listen) = (local_addr(&contract)?, local_addr(&clerk)?);
        drop((contract, clerk));
        let files = PlatformPlan {
            federation_dir: &spec.dir,
            prefix: region,
            listen,
            clerk_listen,
            seed_residents: spec.seed_residents,
            auto_approve_after: spec.auto_approve_after,
        }
        .write()?;
        let log = spec.dir.join(format!("platform-{prefix}.log"));
        let platform =
            RunningPlatform::start(region, files, spec.platform_binary.clone(), log).await?;
        platforms.insert(region.to_string(), platform);
    }
    Ok(platforms)
}

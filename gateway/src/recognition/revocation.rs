//! `PublishRevocation`: an issuer withdraws a license. Remembered by the license id's
//! key (longer than any verdict is cached), and every cached verdict of the license,
//! grace copies included, dropped; answers check the remembered revocations too, so a
//! lookup in flight when it arrives answers "revoked" as well.

use std::sync::Arc;

use tongban_proto::{
    rules::credentials::license_issuer,
    v1::{PublishRevocationRequest, PublishRevocationResponse},
};

use super::{
    cache::Keyer,
    lookup::{Ctx, LicenseEntry, Recognition, field},
};
use crate::{audit::CallAudit, authorize, error::GatewayError};

impl Recognition {
    pub(super) async fn revoke(
        &self,
        request: PublishRevocationRequest,
        ctx: &Ctx<'_>,
        audit: &mut CallAudit,
    ) -> Result<PublishRevocationResponse, GatewayError> {
        let issuer_code =
            license_issuer(&request.license_id).map_err(|e| field("license_id", e.to_string()))?;
        audit.target = Some(issuer_code);
        authorize::check_revoker(&ctx.caller, &issuer_code)?;
        let id_key = self.license_id_key(&request.license_id);
        let applied = self.remember_revocation(id_key).await;
        for cache in [&self.caches.licenses, &self.caches.grace] {
            let _ = cache
                .cache
                .invalidate_entries_if(move |_, entry: &Arc<LicenseEntry>| entry.id_key == id_key);
            if applied {
                cache.stats.invalidations.inc();
            }
        }
        tracing::info!(license = %Keyer::log_ref(&id_key), issuer = %issuer_code, "license revoked");
        Ok(PublishRevocationResponse { applied })
    }
}

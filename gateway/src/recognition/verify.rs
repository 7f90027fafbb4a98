//! The checks behind every verdict, as plain functions over what an issuer returned:
//! the key is the issuing region's and in its window, the signature holds over the
//! exact bytes, the object is about whom and what was asked, and it is valid today.
//! Each failure names its precise reason.

use std::time::SystemTime;

use prost::Message;
use time::Date;
use tongban_proto::{
    rules::credentials::{self, SignedKind, license_issuer, system_time},
    rules::region::RegionPrefix,
    v1::{IdentityAssertion, License, LicenseStatus, SignedObject, VerdictOutcome, VerdictReason},
};

use crate::registry::IssuerKey;

/// Why an object is not accepted: the outcome a window shows, its precise reason and a
/// text that names regions and license ids, never a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub outcome: VerdictOutcome,
    pub reason: VerdictReason,
    pub detail: String,
}

impl Refusal {
    pub fn new(outcome: VerdictOutcome, reason: VerdictReason, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            reason,
            detail: detail.into(),
        }
    }

    fn not_recognized(reason: VerdictReason, detail: impl Into<String>) -> Self {
        Self::new(VerdictOutcome::NotRecognized, reason, detail)
    }
}

/// Opens a signed object: its key among `keys`, the signature over its body, the body
/// decoded, and the key's window holding both when it was issued and now.
fn open<T: Message + Default>(
    signed: &SignedObject,
    kind: SignedKind,
    keys: &[IssuerKey],
    issued_at: impl Fn(&T) -> Option<SystemTime>,
    now: SystemTime,
) -> Result<(T, IssuerKey), Refusal> {
    let Some(key) = keys.iter().find(|k| k.id == signed.key_id) else {
        return Err(Refusal::not_recognized(
            VerdictReason::UnknownKey,
            "signed with a key that is not registered for the issuing region",
        ));
    };
    if !credentials::verify(&key.public_key, kind, &signed.body, &signed.signature) {
        return Err(Refusal::not_recognized(
            VerdictReason::SignatureInvalid,
            "the issuer's signature does not verify",
        ));
    }
    let body = T::decode(signed.body.as_ref()).map_err(|_| {
        Refusal::not_recognized(VerdictReason::Malformed, "the signed object is malformed")
    })?;
    let issued = issued_at(&body).ok_or_else(|| {
        Refusal::not_recognized(
            VerdictReason::Malformed,
            "the signed object has no issue time",
        )
    })?;
    if !key.valid_at(issued) || !key.valid_at(now) {
        return Err(Refusal::not_recognized(
            VerdictReason::KeyOutsideWindow,
            format!("key {:?} is not valid for this object or now", key.id),
        ));
    }
    Ok((body, key.clone()))
}

/// A verified identity assertion, ready to judge.
#[derive(Clone, Debug)]
pub struct CheckedAssertion {
    pub assertion: IdentityAssertion,
    /// The assertion is good until the earlier of its own expiry and its key's window.
    pub good_until: SystemTime,
}

/// Checks a home region's assertion about `id_number` (from the region `route`).
pub fn check_assertion(
    signed: &SignedObject,
    keys: &[IssuerKey],
    route: &RegionPrefix,
    id_number: &str,
    now: SystemTime,
) -> Result<CheckedAssertion, Refusal> {
    let (assertion, key) = open::<IdentityAssertion>(
        signed,
        SignedKind::IdentityAssertion,
        keys,
        |a| system_time(&a.issued_at),
        now,
    )?;
    let issuer_ok = tongban_proto::rules::region::RegionCode::parse(&assertion.issuing_region)
        .is_ok_and(|r| route.contains(&r));
    if !issuer_ok {
        return Err(Refusal::not_recognized(
            VerdictReason::IssuerMismatch,
            format!(
                "asserted by {:?}, not by the region {route} that was asked",
                assertion.issuing_region
            ),
        ));
    }
    if !credentials::subject_matches(&assertion.subject, &assertion.subject_salt, id_number) {
        return Err(Refusal::not_recognized(
            VerdictReason::HolderMismatch,
            "the assertion is about someone else",
        ));
    }
    let expires = system_time(&assertion.expires_at).unwrap_or(SystemTime::UNIX_EPOCH);
    if expires <= now {
        return Err(Refusal::new(
            VerdictOutcome::Expired,
            VerdictReason::Expired,
            "the identity assertion has expired",
        ));
    }
    Ok(CheckedAssertion {
        good_until: expires.min(key.not_after),
        assertion,
    })
}

/// What a verified license states that verdicts need.
#[derive(Clone, Debug)]
pub struct CheckedLicense {
    /// Compact: a cache holds many of these (the type interned by the caller).
    pub license_type: std::sync::Arc<str>,
    pub issuing_region: tongban_proto::rules::region::RegionCode,
    /// The last day it is valid (business time), if it expires.
    pub valid_until: Option<Date>,
    /// Its key's window ends then.
    pub key_until: SystemTime,
    /// What it states (usually a field or none).
    pub fields: Box<[(Box<str>, Box<str>)]>,
}

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// Checks a license from `route` against the id and holder that were asked for.
pub fn check_license(
    signed: &SignedObject,
    keys: &[IssuerKey],
    route: &RegionPrefix,
    license_id: &str,
    holder_id_number: Option<&str>,
    today: Date,
    now: SystemTime,
) -> Result<(License, CheckedLicense), Refusal> {
    let (license, key) = open::<License>(
        signed,
        SignedKind::License,
        keys,
        |l| system_time(&l.issued_at),
        now,
    )?;
    let named = license_issuer(license_id).ok();
    let region = tongban_proto::rules::region::RegionCode::parse(&license.issuing_region)
        .ok()
        .filter(|r| route.contains(r) && named == Some(*r));
    let Some(issuing_region) = region.filter(|_| license.license_id == license_id) else {
        return Err(Refusal::not_recognized(
            VerdictReason::IssuerMismatch,
            format!(
                "region {route} answered with a license of {:?} for {license_id}",
                license.issuing_region
            ),
        ));
    };
    if let Some(holder) = holder_id_number
        && (license.holder.is_empty()
            || !credentials::subject_matches(&license.holder, &license.holder_salt, holder))
    {
        return Err(Refusal::not_recognized(
            VerdictReason::HolderMismatch,
            format!("license {license_id} is not the applicant's"),
        ));
    }
    if license.status == LicenseStatus::Revoked as i32 {
        return Err(Refusal::new(
            VerdictOutcome::Revoked,
            VerdictReason::Revoked,
            format!("license {license_id} was revoked by its issuer"),
        ));
    }
    let valid_from = parse_date(&license.valid_from);
    let valid_until = if license.valid_until.is_empty() {
        None
    } else {
        Some(parse_date(&license.valid_until).ok_or_else(|| {
            Refusal::not_recognized(
                VerdictReason::Malformed,
                "the license's validity is malformed",
            )
        })?)
    };
    if valid_from.is_some_and(|from| from > today) {
        return Err(Refusal::not_recognized(
            VerdictReason::NotYetValid,
            format!("license {license_id} is valid from {}", license.valid_from),
        ));
    }
    if valid_until.is_some_and(|until| until < today) {
        return Err(Refusal::new(
            VerdictOutcome::Expired,
            VerdictReason::Expired,
            format!("license {license_id} expired on {}", license.valid_until),
        ));
    }
    let checked = CheckedLicense {
        license_type: license.license_type.as_str().into(),
        issuing_region,
        fields: license
            .fields
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        valid_until,
        key_until: key.not_after,
    };
    Ok((license, checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use tongban_proto::rules::credentials::{SigningKey, timestamp as ts};

    fn key(id: &str) -> SigningKey {
        SigningKey::from_pkcs8(id, &SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn registered(k: &SigningKey, from: SystemTime, until: SystemTime) -> IssuerKey {
        IssuerKey {
            id: k.key_id.clone(),
            public_key: k.public_key(),
            not_before: from,
            not_after: until,
        }
    }

    const ID: &str = "440305199001011234";

    fn license(status: LicenseStatus, from: &str, until: &str, now: SystemTime) -> License {
        let salt = credentials::new_salt();
        License {
            license_id: "440305-MC-0000001".into(),
            license_type: "marriage_certificate".into(),
            issuing_region: "440305".into(),
            holder: credentials::subject_hash(&salt, ID),
            holder_salt: salt.to_vec(),
            valid_from: from.into(),
            valid_until: until.into(),
            status: status as i32,
            issued_at: Some(ts(now)),
            ..Default::default()
        }
    }

    #[test]
    fn each_failure_has_its_reason() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let today = tongban_proto::rules::calendar::business_now().date();
        let k = key("44-a");
        let keys = [registered(&k, now - hour, now + hour)];
        let route = RegionPrefix::parse("44").unwrap();
        let id = "440305-MC-0000001";
        let check = |signed: &SignedObject, keys: &[IssuerKey], holder: Option<&str>| {
            check_license(signed, keys, &route, id, holder, today, now).map(|_| ())
        };
        let good = k.sign(
            SignedKind::License,
            license(LicenseStatus::Valid, "2020-01-01", "", now).encode_to_vec(),
        );
        assert_eq!(check(&good, &keys, Some(ID)), Ok(()));

        let reason = |r: Result<(), Refusal>| r.unwrap_err().reason;
        let mut tampered = good.clone();
        let mut signature = tampered.signature.to_vec();
        signature[3] ^= 0x40;
        tampered.signature = signature.into();
        assert_eq!(
            reason(check(&tampered, &keys, None)),
            VerdictReason::SignatureInvalid
        );
        let stranger = key("44-a").sign(SignedKind::License, good.body.to_vec());
        assert_eq!(
            reason(check(&stranger, &keys, None)),
            VerdictReason::SignatureInvalid
        );
        let unknown = key("44-z").sign(SignedKind::License, good.body.to_vec());
        assert_eq!(
            reason(check(&unknown, &keys, None)),
            VerdictReason::UnknownKey
        );
        let old_window = [registered(&k, now - 2 * hour, now - hour)];
        assert_eq!(
            reason(check(&good, &old_window, None)),
            VerdictReason::KeyOutsideWindow
        );
        assert_eq!(
            reason(check(&good, &keys, Some("110105194912310021"))),
            VerdictReason::HolderMismatch
        );
        let revoked = k.sign(
            SignedKind::License,
            license(LicenseStatus::Revoked, "2020-01-01", "", now).encode_to_vec(),
        );
        assert_eq!(reason(check(&revoked, &keys, None)), VerdictReason::Revoked);
        let expired = k.sign(
            SignedKind::License,
            license(LicenseStatus::Valid, "2000-01-01", "2001-01-01", now).encode_to_vec(),
        );
        let refusal = check(&expired, &keys, None).unwrap_err();
        assert_eq!(
            (refusal.outcome, refusal.reason),
            (VerdictOutcome::Expired, VerdictReason::Expired)
        );
        let future = k.sign(
            SignedKind::License,
            license(LicenseStatus::Valid, "2999-01-01", "", now).encode_to_vec(),
        );
        assert_eq!(
            reason(check(&future, &keys, None)),
            VerdictReason::NotYetValid
        );
        // Answered by another region than the id names.
        let elsewhere = check_license(
            &good,
            &keys,
            &RegionPrefix::parse("31").unwrap(),
            id,
            None,
            today,
            now,
        );
        assert_eq!(elsewhere.unwrap_err().reason, VerdictReason::IssuerMismatch);
        // An identity assertion is never taken for a license.
        let as_assertion = k.sign(SignedKind::IdentityAssertion, good.body.to_vec());
        assert_eq!(
            reason(check(&as_assertion, &keys, None)),
            VerdictReason::SignatureInvalid
        );
    }

    #[test]
    fn assertions_are_checked_for_subject_issuer_and_expiry() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let k = key("44-a");
        let keys = [registered(&k, now - hour, now + 2 * hour)];
        let route = RegionPrefix::parse("44").unwrap();
        let salt = credentials::new_salt();
        let assertion = |region: &str, expires: SystemTime| IdentityAssertion {
            subject: credentials::subject_hash(&salt, ID),
            subject_salt: salt.to_vec(),
            name_matches: true,
            subject_known: true,
            issuing_region: region.into(),
            issued_at: Some(ts(now)),
            expires_at: Some(ts(expires)),
            ..Default::default()
        };
        let sign = |a: IdentityAssertion| k.sign(SignedKind::IdentityAssertion, a.encode_to_vec());
        let ok = check_assertion(
            &sign(assertion("440000", now + hour)),
            &keys,
            &route,
            ID,
            now,
        )
        .unwrap();
        assert_eq!(ok.good_until, now + hour);
        let other = check_assertion(
            &sign(assertion("440000", now + hour)),
            &keys,
            &route,
            "110105194912310021",
            now,
        );
        assert_eq!(other.unwrap_err().reason, VerdictReason::HolderMismatch);
        let foreign = check_assertion(
            &sign(assertion("310000", now + hour)),
            &keys,
            &route,
            ID,
            now,
        );
        assert_eq!(foreign.unwrap_err().reason, VerdictReason::IssuerMismatch);
        let stale = check_assertion(
            &sign(assertion("440000", now - Duration::from_secs(1))),
            &keys,
            &route,
            ID,
            now,
        );
        assert_eq!(stale.unwrap_err().outcome, VerdictOutcome::Expired);
        // Good until the key's window ends, if that comes first.
        let long = check_assertion(
            &sign(assertion("440000", now + 5 * hour)),
            &keys,
            &route,
            ID,
            now,
        )
        .unwrap();
        assert_eq!(long.good_until, now + 2 * hour);
    }
}

//! The applicant's explicit request on every lookup (once-only with consent): a region
//! fetches a person's data from the region that holds it only because the person asked
//! it to, for one one-thing, and says when and where they asked. The gateway and the
//! issuing region refuse a lookup without it by this one rule, and the person's access
//! log shows it beside the lookup.

use std::time::{Duration, SystemTime};

use crate::v1::{ApplicantRequest, LookupPurpose};

/// Where an applicant can make the request.
pub const CHANNELS: [&str; 3] = ["portal", "window", "notice"];

/// The field a missing or malformed request is named by.
pub const FIELD: &str = "purpose.applicant_request";

/// How far ahead of the checker's clock a request may be dated (clocks differ).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A request as checked: its channel (one of [`CHANNELS`]) and when it was made (Unix
/// milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consent {
    pub channel: &'static str,
    pub requested_ms: i64,
}

/// The request a lookup's purpose carries, or what is wrong with it (the problem, to
/// name under [`FIELD`]).
pub fn checked(purpose: Option<&LookupPurpose>, now: SystemTime) -> Result<Consent, String> {
    let Some(request) = purpose.and_then(|p| p.applicant_request.as_ref()) else {
        return Err(
            "required: the applicant's explicit request that their data be fetched \
             (the portal or window that took it says when and where)"
                .to_owned(),
        );
    };
    let Some(channel) = CHANNELS.iter().find(|c| **c == request.channel) else {
        return Err(format!("channel must be one of {}", CHANNELS.join(", ")));
    };
    let Some(at) = request.requested_at.as_ref() else {
        return Err("requested_at: required".to_owned());
    };
    let requested_ms = at
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(at.nanos.clamp(0, 999_999_999) / 1_000_000)))
        .filter(|ms| *ms > 0)
        .ok_or_else(|| "requested_at: out of range".to_owned())?;
    let latest = now
        .checked_add(CLOCK_SKEW)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
    if requested_ms > latest {
        return Err("requested_at: later than now".to_owned());
    }
    Ok(Consent {
        channel,
        requested_ms,
    })
}

/// The request made on `channel` at `requested_ms` (Unix milliseconds), as a lookup
/// carries it.
pub fn request(channel: &str, requested_ms: i64) -> ApplicantRequest {
    ApplicantRequest {
        requested_at: Some(prost_types::Timestamp {
            seconds: requested_ms.div_euclid(1000),
            nanos: (requested_ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
        channel: channel.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purpose(request: Option<ApplicantRequest>) -> LookupPurpose {
        LookupPurpose {
            one_thing_id: "household-transfer".into(),
            case_number: "310000-20261204-00000001".into(),
            applicant_request: request,
        }
    }

    #[test]
    fn a_lookup_carries_when_and_where_the_applicant_asked() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let ms = 1_780_000_000_000 - 60_000;
        let ok = checked(Some(&purpose(Some(request("window", ms)))), now).unwrap();
        assert_eq!(
            ok,
            Consent {
                channel: "window",
                requested_ms: ms
            }
        );

        let missing = checked(Some(&purpose(None)), now).unwrap_err();
        assert!(missing.starts_with("required"), "{missing}");
        assert!(checked(None, now).is_err());
        let mut odd = request("email", ms);
        assert_eq!(
            checked(Some(&purpose(Some(odd.clone()))), now).unwrap_err(),
            "channel must be one of portal, window, notice"
        );
        odd.channel = "portal".into();
        odd.requested_at = None;
        assert_eq!(
            checked(Some(&purpose(Some(odd))), now).unwrap_err(),
            "requested_at: required"
        );
        let later = request("portal", 1_780_000_000_000 + 301_000);
        assert_eq!(
            checked(Some(&purpose(Some(later))), now).unwrap_err(),
            "requested_at: later than now"
        );
        let mut wild = request("portal", ms);
        wild.requested_at = Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: -5,
        });
        assert!(checked(Some(&purpose(Some(wild))), now).is_err());
    }
}

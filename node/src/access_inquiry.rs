//! `POST /v1/access-log`: a citizen reads who looked them up. The portal in front has
//! authenticated the citizen and says so with a proof only it can make: an HMAC-SHA256,
//! under the secret configured for it (`[access_log] portal_secret`), of the time and the
//! ID number asked about, in the `tongban-portal-proof` header as `<unix seconds>.<hex>`,
//! good for five minutes. Without a configured secret the endpoint answers no one.
//!
//! Asking is limited per person (`per_person_per_minute` after a burst of as many), so
//! nobody can guess a name by trying, and an unknown number, an unknown person and a
//! wrong name are answered alike: an empty log. Only the registered person with their name
//! reads entries.

use std::{
    num::NonZeroU32,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The header the portal's proof travels in.
pub const PROOF_HEADER: &str = "tongban-portal-proof";
/// How far a proof's time may be from the node's clock, either way.
const PROOF_WINDOW: Duration = Duration::from_secs(300);
/// Keys of people asked about, remembered for the rate limit before old ones are dropped.
const REMEMBERED_PEOPLE: usize = 100_000;

/// `[access_log]` in a node's config.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file holding the secret the province's portal signs its access-log requests
    /// with (at least 32 bytes; shared with the portal only).
    pub portal_secret: PathBuf,
    /// Inquiries about one person a minute, after a burst of as many. Default 5.
    #[serde(default = "default_per_minute")]
    pub per_person_per_minute: u32,
}

fn default_per_minute() -> u32 {
    5
}

/// Why an inquiry is not answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No secret configured: the node answers no access-log inquiry.
    NotEnabled,
    /// The proof is missing, malformed, too old or does not hold.
    BadProof(&'static str),
    /// Asked about this person too often; retry after this long.
    TooOften(Duration),
}

/// Checks inquiries: the portal's proof, then the per-person rate.
pub struct Inquiries {
    key: Option<hmac::Key>,
    per_person: DefaultKeyedRateLimiter<Vec<u8>>,
}

impl Inquiries {
    /// From the config (`None`: not enabled); the secret file is read here.
    pub fn new(config: Option<&AccessLogConfig>) -> Result<Self, String> {
        let per_minute = config.map_or(default_per_minute(), |c| c.per_person_per_minute);
        let per_minute = NonZeroU32::new(per_minute)
            .ok_or("access_log.per_person_per_minute must be at least 1")?;
        let key = match config {
            None => None,
            Some(config) => {
                let secret = std::fs::read(&config.portal_secret)
                    .map_err(|e| format!("{}: {e}", config.portal_secret.display()))?;
                if secret.len() < 32 {
                    return Err(format!(
                        "{}: the portal secret must be at least 32 bytes",
                        config.portal_secret.display()
                    ));
                }
                Some(hmac::Key::new(hmac::HMAC_SHA256, &secret))
            }
        };
        Ok(Self {
            key,
            per_person: RateLimiter::keyed(Quota::per_minute(per_minute)),
        })
    }

    /// Whether the inquiry about `id_number` (keyed as `person`) with `proof` is answered.
    pub fn admit(
        &self,
        id_number: &str,
        person: &[u8],
        proof: Option<&str>,
    ) -> Result<(), Refusal> {
        let key = self.key.as_ref().ok_or(Refusal::NotEnabled)?;
        let proof = proof.ok_or(Refusal::BadProof("no proof"))?;
        check_proof(key, id_number, proof, now())?;
        if self.per_person.len() > REMEMBERED_PEOPLE {
            self.per_person.retain_recent();
        }
        self.per_person
            .check_key(&person.to_vec())
            .map_err(|not_until| {
                let clock = governor::clock::DefaultClock::default();
                Refusal::TooOften(not_until.wait_time_from(governor::clock::Clock::now(&clock)))
            })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The proof header's value for `id_number` at `unix_seconds`, as the portal makes it.
pub fn proof(secret: &[u8], id_number: &str, unix_seconds: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, message(unix_seconds, id_number).as_bytes());
    format!(
        "{unix_seconds}.{}",
        tongban_proto::rules::digest::hex(tag.as_ref())
    )
}

fn message(unix_seconds: u64, id_number: &str) -> String {
    format!("tongban access-log inquiry\n{unix_seconds}\n{id_number}")
}

fn check_proof(key: &hmac::Key, id_number: &str, proof: &str, now: u64) -> Result<(), Refusal> {
    let (time, tag) = proof
        .split_once('.')
        .ok_or(Refusal::BadProof("expected <unix seconds>.<hex HMAC>"))?;
    let time: u64 = time
        .parse()
        .map_err(|_| Refusal::BadProof("expected <unix seconds>.<hex HMAC>"))?;
    if time.abs_diff(now) > PROOF_WINDOW.as_secs() {
        return Err(Refusal::BadProof(
            "the proof's time is more than 5 minutes off",
        ));
    }
    let tag = crate::receipt_token::unhex(tag)
        .ok_or(Refusal::BadProof("expected <unix seconds>.<hex HMAC>"))?;
    hmac::verify(key, message(time, id_number).as_bytes(), &tag)
        .map_err(|_| Refusal::BadProof("the proof does not hold"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ID: &str = "110105194912310021";

    fn inquiries(per_minute: u32) -> Inquiries {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.key");
        std::fs::write(&path, SECRET).unwrap();
        Inquiries::new(Some(&AccessLogConfig {
            portal_secret: path,
            per_person_per_minute: per_minute,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_fresh_proof_for_the_same_number_holds() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        let now = 1_800_000_000;
        assert_eq!(check_proof(&key, ID, &proof(SECRET, ID, now), now), Ok(()));
        assert_eq!(
            check_proof(&key, ID, &proof(SECRET, ID, now - 200), now),
            Ok(())
        );
        for bad in [
            proof(SECRET, ID, now - 400),
            proof(SECRET, "110105194912310013", now),
            proof(b"another secret of thirty-two bytes", ID, now),
            "1800000000".to_owned(),
            "x.y".to_owned(),
            String::new(),
        ] {
            assert!(check_proof(&key, ID, &bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn guesses_about_one_person_are_throttled_and_others_are_not() {
        let inquiries = inquiries(5);
        let proof_now = |id: &str| proof(SECRET, id, now());
        let mut admitted = 0;
        for _ in 0..20 {
            match inquiries.admit(ID, b"person-a", Some(&proof_now(ID))) {
                Ok(()) => admitted += 1,
                Err(Refusal::TooOften(wait)) => assert!(wait <= Duration::from_secs(60)),
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(admitted, 5);
        let other = "110105194912310013";
        assert_eq!(
            inquiries.admit(other, b"person-b", Some(&proof_now(other))),
            Ok(())
        );
        assert_eq!(
            inquiries.admit(ID, b"person-a", None),
            Err(Refusal::BadProof("no proof"))
        );
        let off = Inquiries::new(None).unwrap();
        assert_eq!(
            off.admit(ID, b"person-a", Some(&proof_now(ID))),
            Err(Refusal::NotEnabled)
        );
    }
}

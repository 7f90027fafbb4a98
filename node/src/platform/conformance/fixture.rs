//! The test cases the kit hands to the platform: fresh case numbers in the contract's
//! format that no federation would give (the sequence starts with `9` and the rest is
//! random), the one-thing `conformance-check`, a synthetic applicant who is no real
//! person, and a payload of random bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use time::{Date, macros::format_description};
use tongban_proto::rules::{
    calendar,
    region::{RegionCode, RegionTable},
    resident_id::check_character,
};

use crate::platform::{
    contract::wire::{Applicant, CaseTakeover},
    embedded::synthetic_residents,
};

/// The one-thing id of every test case, so a platform's staff can tell them apart.
pub const ONE_THING: &str = "conformance-check";

/// Makes test cases.
#[derive(Clone, Debug)]
pub struct Fixtures {
    origin: String,
    target: String,
    today: Date,
    applicant: Applicant,
}

fn region(name: &str, value: &str) -> Result<RegionCode, String> {
    let code = RegionCode::parse(value).map_err(|e| format!("{name} {value:?}: {e}"))?;
    if !RegionTable::embedded().is_known(&code) {
        return Err(format!("{name} {value:?} is not a GB/T 2260 region code"));
    }
    Ok(code)
}

fn random_below(bound: u32) -> u32 {
    let mut bytes = [0u8; 4];
    // The system generator does not fail on supported platforms; zeros would only make
    // a case number less random.
    let _ = SystemRandom::new().fill(&mut bytes);
    u32::from_le_bytes(bytes) % bound
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes
}

impl Fixtures {
    /// Test cases filed at `origin` for the platform of region `target`.
    pub fn new(origin: &str, target: &str) -> Result<Self, String> {
        let origin_code = region("the origin region", origin)?;
        region("the platform's region", target)?;
        let resident = synthetic_residents(RegionTable::embedded(), &origin_code.to_prefix(), 1)
            .into_iter()
            .next()
            .ok_or_else(|| format!("no synthetic resident can be made for region {origin}"))?;
        Ok(Self {
            origin: origin.to_owned(),
            target: target.to_owned(),
            today: calendar::business_now().date(),
            applicant: Applicant {
                id_number: resident.id.as_str().to_owned(),
                name: resident.name,
                phone: String::new(),
            },
        })
    }

    /// A fresh case number: `<origin>-<today>-9<7 random digits>`.
    pub fn case_number(&self) -> String {
        let day = self
            .today
            .format(format_description!("[year][month][day]"))
            .unwrap_or_default();
        format!("{}-{day}-9{:07}", self.origin, random_below(10_000_000))
    }

    /// A take-over of a new test case numbered `case_number`.
    pub fn takeover(&self, case_number: &str) -> CaseTakeover {
        let ymd = format_description!("[year]-[month]-[day]");
        let filed_at = calendar::business_now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        // A date for the platform to store, not a promise: four weeks on.
        let promised = self
            .today
            .saturating_add(time::Duration::weeks(4))
            .format(ymd)
            .unwrap_or_default();
        CaseTakeover {
            case_number: case_number.to_owned(),
            one_thing_id: ONE_THING.to_owned(),
            catalog_version: "conformance".to_owned(),
            origin_region: self.origin.clone(),
            target_region: self.target.clone(),
            handling_mode: "single".to_owned(),
            applicant: self.applicant.clone(),
            form: BTreeMap::from([(
                "purpose".to_owned(),
                "Tongban conformance check: a test case, not an application".to_owned(),
            )]),
            materials: Vec::new(),
            prefilled_fields: Vec::new(),
            joint_regions: Vec::new(),
            joint_part: String::new(),
            filed_at,
            promised_date: promised,
            payload: random_payload(),
        }
    }

    /// An ID number that is valid but belongs to nobody in a register: born on
    /// 1900-01-01 at the origin, sequence 999 (the synthetic range).
    pub fn unknown_person(&self) -> String {
        let first17 = format!("{}19000101999", self.origin);
        let digits = <[u8; 17]>::try_from(first17.as_bytes()).unwrap_or([b'0'; 17]);
        format!("{first17}{}", check_character(&digits))
    }
}

/// A payload of 32 random bytes, base64.
pub fn random_payload() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(32))
}

/// What a take-over holds, for the report (the applicant masked).
pub fn note(takeover: &CaseTakeover) -> String {
    let id = &takeover.applicant.id_number;
    let masked = if id.len() == 18 {
        format!("{}********{}", &id[..6], &id[14..])
    } else {
        "***".to_owned()
    };
    format!(
        "take-over of test case {} (one-thing {}, {} → {}, applicant {masked}, payload {}…)",
        takeover.case_number,
        takeover.one_thing_id,
        takeover.origin_region,
        takeover.target_region,
        takeover.payload.chars().take(12).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_proto::rules::resident_id::ResidentId;

    #[test]
    fn test_cases_look_like_federation_cases_but_cannot_be_one() {
        let fixtures = Fixtures::new("110000", "440000").unwrap();
        let number = fixtures.case_number();
        let parts: Vec<&str> = number.split('-').collect();
        assert_eq!(parts.len(), 3, "{number}");
        assert_eq!(parts[0], "110000");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(parts[2].len(), 8);
        assert!(parts[2].starts_with('9'));
        assert_ne!(number, fixtures.case_number());
        let takeover = fixtures.takeover(&number);
        let today = calendar::business_now().date();
        assert!(
            ResidentId::parse(
                &takeover.applicant.id_number,
                RegionTable::embedded(),
                today
            )
            .is_ok()
        );
        assert!(
            ResidentId::parse(&fixtures.unknown_person(), RegionTable::embedded(), today).is_ok()
        );
        assert_ne!(takeover.payload, fixtures.takeover(&number).payload);
        assert!(!note(&takeover).contains(&takeover.applicant.id_number));
        assert!(Fixtures::new("999999", "440000").is_err());
    }
}

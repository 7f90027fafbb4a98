//! Between the node's types and the contract's bodies (`contract::wire`): a delivered
//! application as a take-over, the platform's cases, event pages, persons, licenses and
//! revocation pages as the node's traits return them. Pure functions, so every rule is
//! tested without a platform.
//!
//! Statuses go through the node's `[platform.status_codes]` table onto the canonical
//! states, and from there onto the federation's stages. A code the table does not map
//! is never guessed: a case answer with one is an error naming the code, and an event
//! page stops right before the first event with one, so the node's feed waits there
//! (see [`event_page`]).

use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tongban_proto::{
    rules::{calendar, region::RegionTable, resident_id::ResidentId},
    v1::{Application, AssuranceLevel, CaseStatus, HandlingMode, MaterialSource},
};

use crate::platform::{
    adapter::{CaseEvent, EventPage, PlatformCase, PlatformError},
    contract::{status::StatusCodes, wire},
    register::{LicenseRecord, Person, PlatformRevocation, RevocationPage},
};

fn contract(what: impl std::fmt::Display) -> PlatformError {
    PlatformError::Contract(what.to_string())
}

/// `text` as a URL path segment or query value: every byte but the unreserved ones
/// (RFC 3986) percent-encoded.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The path and query of a feed page: `after` left out at the feed's beginning.
pub fn feed_path(path: &str, after: &str, limit: u32) -> String {
    let limit = limit.clamp(1, wire::MAX_PAGE);
    if after.is_empty() {
        format!("{path}?limit={limit}")
    } else {
        format!("{path}?after={}&limit={limit}", escape(after))
    }
}

/// An instant as the contract writes it: RFC 3339 in business time.
pub fn rfc3339(timestamp: &prost_types::Timestamp) -> String {
    let nanos = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(|t| t.to_offset(calendar::BUSINESS_OFFSET))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An RFC 3339 instant the platform sent in `field`.
fn instant(field: &str, value: &str) -> Result<OffsetDateTime, PlatformError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| contract(format!("{field} {value:?} is not an RFC 3339 instant")))
}

fn timestamp(field: &str, value: &str) -> Result<prost_types::Timestamp, PlatformError> {
    let t = instant(field, value)?;
    Ok(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    })
}

fn millis(field: &str, value: &str) -> Result<i64, PlatformError> {
    Ok((instant(field, value)?.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The take-over of a delivered application; `payload` is its encoding as received.
pub fn takeover(application: &Application, payload: &[u8]) -> wire::CaseTakeover {
    use base64::Engine as _;
    let applicant = application.applicant.clone().unwrap_or_default();
    let materials = application
        .materials
        .iter()
        .map(|m| wire::Material {
            material_id: m.material_id.clone(),
            source: match MaterialSource::try_from(m.source) {
                Ok(MaterialSource::License) => "license",
                Ok(MaterialSource::Paper) => "paper",
                _ => "upload",
            }
            .to_owned(),
            reference: m.reference.clone(),
        })
        .collect();
    let joint = application.mode == HandlingMode::Joint as i32;
    wire::CaseTakeover {
        case_number: application.case_number.clone(),
        one_thing_id: application.one_thing_id.clone(),
        catalog_version: application.catalog_version.clone(),
        origin_region: application.origin_region.clone(),
        target_region: application.target_region.clone(),
        handling_mode: if joint { "joint" } else { "single" }.to_owned(),
        applicant: wire::Applicant {
            id_number: applicant.id_number,
            name: applicant.name,
            phone: applicant.phone,
        },
        form: application
            .form
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        materials,
        prefilled_fields: application.prefilled_fields.clone(),
        joint_regions: application.joint_regions.clone(),
        joint_part: application.part_id.clone(),
        filed_at: application
            .filed_at
            .as_ref()
            .map(rfc3339)
            .unwrap_or_default(),
        promised_date: application.promised_date.clone(),
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
    }
}

/// The platform's case, its status code mapped; `asked` is the case number asked about.
pub fn case(
    view: wire::CaseView,
    asked: &str,
    codes: &StatusCodes,
) -> Result<PlatformCase, PlatformError> {
    if view.case_number != asked {
        return Err(contract(format!(
            "asked for case {asked}, answered case {:?}",
            view.case_number
        )));
    }
    let stage = codes.canonical(&view.status)?.stage();
    Ok(PlatformCase {
        reference: view.reference,
        case_number: view.case_number,
        one_thing_id: view.one_thing_id,
        origin_region: view.origin_region,
        status: CaseStatus {
            stage: stage as i32,
            detail: view.detail,
            sequence: view.sequence,
            updated_at: Some(timestamp("updated_at", &view.updated_at)?),
        },
    })
}

/// A page of case events for the node's follower.
///
/// The page must be shaped as the contract says (events with cursors, a `next_cursor`
/// that is the last event's, or where an empty page stands), else it is a contract
/// error and the follower stays where it is. An event whose status code (or previous
/// one) the table does not map ends the page right before it: the events before it
/// are returned with `more` and the cursor before it, so the next read starts at it;
/// when it is the first, the read fails with [`PlatformError::UnmappedStatus`] — the
/// follower waits there, counted and alerted, until the table is fixed.
pub fn event_page(
    page: wire::CaseEventPage,
    after: &str,
    codes: &StatusCodes,
) -> Result<EventPage, PlatformError> {
    check_page_shape(
        page.events.iter().map(|e| e.cursor.as_str()),
        &page.next_cursor,
        page.more,
        after,
    )?;
    let mut events: Vec<CaseEvent> = Vec::with_capacity(page.events.len());
    for event in page.events {
        let mapped = codes.canonical(&event.status).and_then(|status| {
            let previous = event
                .previous_status
                .as_deref()
                .map(|code| codes.canonical(code))
                .transpose()?;
            Ok((status, previous))
        });
        let (status, previous) = match mapped {
            Ok(mapped) => mapped,
            Err(unmapped) => {
                let Some(last) = events.last() else {
                    return Err(unmapped.into());
                };
                let next_cursor = last.cursor.clone();
                return Ok(EventPage {
                    events,
                    next_cursor,
                    more: true,
                });
            }
        };
        if event.case_number.is_empty() {
            return Err(contract(format!("event {:?} names no case", event.cursor)));
        }
        // The filing region keeps the highest sequence it saw: a 0 would be ignored
        // there, and every later change with it.
        if event.sequence == 0 {
            return Err(contract(format!(
                "event {:?} has sequence 0 (sequences start at 1)",
                event.cursor
            )));
        }
        events.push(CaseEvent {
            case: PlatformCase {
                // Events do not carry the platform's reference; the node's follower
                // does not need it (the delivery's answer carried it).
                reference: String::new(),
                case_number: event.case_number,
                one_thing_id: event.one_thing_id,
                origin_region: event.origin_region,
                status: CaseStatus {
                    stage: status.stage() as i32,
                    detail: event.detail,
                    sequence: event.sequence,
                    updated_at: Some(timestamp("at", &event.at)?),
                },
            },
            previous: previous.map(|p| p.stage()),
            cursor: event.cursor,
        });
    }
    Ok(EventPage {
        events,
        next_cursor: page.next_cursor,
        more: page.more,
    })
}

/// What both feeds' pages must be: every item with a cursor; a page with items ends at
/// its last item's cursor; an empty page stands where it was asked (or, at the
/// feed's beginning, anywhere) and says no more follow.
fn check_page_shape<'a>(
    cursors: impl Iterator<Item = &'a str>,
    next_cursor: &str,
    more: bool,
    after: &str,
) -> Result<(), PlatformError> {
    let mut last = None;
    for cursor in cursors {
        if cursor.is_empty() {
            return Err(contract("a feed item has an empty cursor"));
        }
        last = Some(cursor);
    }
    match last {
        Some(last) if last != next_cursor => Err(contract(format!(
            "next_cursor {next_cursor:?} is not the page's last cursor {last:?}"
        ))),
        Some(_) => Ok(()),
        None if more => Err(contract("an empty page says more follow")),
        // An empty page stays where it was asked: a cursor moved past nothing would
        // skip the events in between. (At the feed's beginning, a platform may name
        // the position of its empty head.)
        None if next_cursor != after && !after.is_empty() => Err(contract(format!(
            "an empty page after {after:?} answered next_cursor {next_cursor:?}: it must \
             stay where it was asked"
        ))),
        None => Ok(()),
    }
}

/// A person of the register; `asked` is the ID number asked about.
pub fn person(found: wire::Person, asked: &str) -> Result<Person, PlatformError> {
    if !found.id_number.eq_ignore_ascii_case(asked) {
        return Err(contract("the person answered is not the one asked about"));
    }
    let level = match found.assurance_level.as_str() {
        "low" => AssuranceLevel::Low,
        "substantial" => AssuranceLevel::Substantial,
        "high" => AssuranceLevel::High,
        other => {
            return Err(contract(format!(
                "assurance_level {other:?} is not low, substantial or high"
            )));
        }
    };
    Ok(Person {
        name: found.name,
        home_region: found.home_region,
        level,
    })
}

/// A name as the node shows it: its first character, then `*` for each other.
pub fn masked_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// A license as the node records it: the holder by the node's keyed hash of their ID
/// number and by masked name, never in the clear.
pub fn license(found: wire::License, id_hash_key: &[u8]) -> Result<LicenseRecord, PlatformError> {
    let today = calendar::business_now().date();
    let holder = ResidentId::parse(&found.holder_id_number, RegionTable::embedded(), today)
        .map_err(|_| {
            contract(format!(
                "license {}: holder_id_number is not a valid resident ID number",
                found.license_id
            ))
        })?;
    let revoked_ms = found
        .revoked_at
        .as_deref()
        .map(|at| millis("revoked_at", at))
        .transpose()?;
    Ok(LicenseRecord {
        holder_hash: holder.keyed_hash(id_hash_key),
        holder_name_masked: masked_name(&found.holder_name),
        issued_ms: millis("issued_at", &found.issued_at)?,
        revoked_ms,
        license_id: found.license_id,
        license_type: found.license_type,
        issuing_region: found.issuing_region,
        fields: found.fields,
        valid_from: found.valid_from,
        valid_until: found.valid_until,
    })
}

/// A page of the revocation feed, checked as the case events are.
pub fn revocation_page(
    page: wire::RevocationPage,
    after: &str,
) -> Result<RevocationPage, PlatformError> {
    check_page_shape(
        page.revocations.iter().map(|r| r.cursor.as_str()),
        &page.next_cursor,
        page.more,
        after,
    )?;
    let revocations = page
        .revocations
        .into_iter()
        .map(|r| {
            if r.license_id.is_empty() {
                return Err(contract(format!(
                    "revocation {:?} names no license",
                    r.cursor
                )));
            }
            Ok(PlatformRevocation {
                revoked_ms: millis("revoked_at", &r.revoked_at)?,
                cursor: r.cursor,
                license_id: r.license_id,
                reason: r.reason,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(RevocationPage {
        revocations,
        next_cursor: page.next_cursor,
        more: page.more,
    })
}

#[cfg(test)]
mod tests {
    use tongban_proto::v1::{Applicant, MaterialRef, Stage};

    use super::*;

    fn event(cursor: &str, previous: Option<&str>, status: &str) -> wire::CaseEvent {
        wire::CaseEvent {
            cursor: cursor.into(),
            case_number: "310000-20261203-00000001".into(),
            one_thing_id: "birth".into(),
            origin_region: "310000".into(),
            sequence: 1,
            previous_status: previous.map(str::to_owned),
            status: status.into(),
            detail: String::new(),
            at: "2026-12-03T09:30:00+08:00".into(),
        }
    }

    fn page(events: Vec<wire::CaseEvent>, more: bool) -> wire::CaseEventPage {
        wire::CaseEventPage {
            next_cursor: events.last().map(|e| e.cursor.clone()).unwrap_or_default(),
            events,
            more,
        }
    }

    #[test]
    fn events_map_through_the_table_onto_stages() {
        let codes = StatusCodes::reference();
        let mapped = event_page(
            page(
                vec![
                    event("c1", None, "已接件"),
                    event("c2", Some("已接件"), "已受理"),
                    event("c3", Some("已受理"), "办结"),
                ],
                false,
            ),
            "",
            &codes,
        )
        .unwrap();
        let stages: Vec<_> = mapped
            .events
            .iter()
            .map(|e| (e.previous, e.case.status.stage))
            .collect();
        assert_eq!(
            stages,
            vec![
                (None, Stage::Accepted as i32),
                (Some(Stage::Accepted), Stage::InReview as i32),
                (Some(Stage::InReview), Stage::Approved as i32),
            ]
        );
        assert_eq!((mapped.next_cursor.as_str(), mapped.more), ("c3", false));
        let at = mapped.events[0].case.status.updated_at.unwrap();
        assert_eq!(at.seconds, 1_796_261_400);
    }

    #[test]
    fn an_unmapped_code_stops_the_page_right_before_it() {
        let codes = StatusCodes::reference();
        let events = vec![
            event("c1", None, "已接件"),
            event("c2", Some("已接件"), "挂起"),
            event("c3", Some("挂起"), "办结"),
        ];
        let mapped = event_page(page(events.clone(), false), "c0", &codes).unwrap();
        assert_eq!(mapped.events.len(), 1);
        assert_eq!((mapped.next_cursor.as_str(), mapped.more), ("c1", true));
        // Read again from there: the unmapped event is first, and the read fails
        // naming the code, so the follower waits at it.
        let err = event_page(page(events[1..].to_vec(), false), "c1", &codes).unwrap_err();
        assert!(
            matches!(&err, PlatformError::UnmappedStatus(u) if u.code == "挂起"),
            "{err}"
        );
        // An unmapped previous status stops it just the same.
        let err = event_page(page(events[2..].to_vec(), false), "c2", &codes).unwrap_err();
        assert!(matches!(err, PlatformError::UnmappedStatus(_)));
    }

    #[test]
    fn a_page_not_shaped_as_the_contract_says_is_refused() {
        let codes = StatusCodes::reference();
        let mut wrong_next = page(vec![event("c1", None, "已接件")], false);
        wrong_next.next_cursor = "c9".into();
        let mut no_next = page(vec![event("c1", None, "已接件")], false);
        no_next.next_cursor = String::new();
        let empty_more = page(Vec::new(), true);
        let rewinding = page(Vec::new(), false);
        let no_cursor = page(vec![event("", None, "已接件")], false);
        for (bad, after) in [
            (wrong_next, ""),
            (no_next, ""),
            (empty_more, "c1"),
            (rewinding, "c1"),
            (no_cursor, ""),
        ] {
            let err = event_page(bad, after, &codes).unwrap_err();
            assert!(matches!(err, PlatformError::Contract(_)), "{err}");
        }
        let mut standing = page(Vec::new(), false);
        standing.next_cursor = "c1".into();
        assert!(
            event_page(standing, "c1", &codes)
                .unwrap()
                .events
                .is_empty()
        );
        assert!(event_page(page(Vec::new(), false), "", &codes).is_ok());
    }

    #[test]
    fn a_case_answer_with_an_unmapped_code_is_an_error_naming_it() {
        let view = |status: &str| wire::CaseView {
            case_number: "310000-20261203-00000001".into(),
            reference: "44P0000000001".into(),
            one_thing_id: "birth".into(),
            origin_region: "310000".into(),
            status: status.into(),
            detail: "received".into(),
            sequence: 1,
            updated_at: "2026-12-03T09:30:00.5+08:00".into(),
        };
        let codes = StatusCodes::reference();
        let case = case(view("已接件"), "310000-20261203-00000001", &codes).unwrap();
        assert_eq!(case.status.stage, Stage::Accepted as i32);
        assert_eq!(case.status.updated_at.unwrap().nanos, 500_000_000);
        let err = super::case(view("挂起"), "310000-20261203-00000001", &codes).unwrap_err();
        assert!(err.to_string().contains("挂起"), "{err}");
        let err = super::case(view("已接件"), "310000-20261203-00000002", &codes).unwrap_err();
        assert!(matches!(err, PlatformError::Contract(_)));
    }

    #[test]
    fn a_takeover_carries_the_application_and_its_exact_bytes() {
        let application = Application {
            case_number: "310000-20261203-00000001".into(),
            one_thing_id: "birth".into(),
            mode: HandlingMode::FullyOnline as i32,
            applicant: Some(Applicant {
                id_number: "110105198001019010".into(),
                name: "王小明".into(),
                phone: String::new(),
            }),
            materials: vec![MaterialRef {
                material_id: "m1".into(),
                source: MaterialSource::License as i32,
                reference: "440000-MC-1".into(),
            }],
            filed_at: Some(prost_types::Timestamp {
                seconds: 1_796_261_400,
                nanos: 0,
            }),
            ..Default::default()
        };
        let t = takeover(&application, b"\x00\x01payload");
        assert_eq!(t.filed_at, "2026-12-03T09:30:00+08:00");
        assert_eq!(t.handling_mode, "single");
        assert_eq!(t.materials[0].source, "license");
        assert_eq!(t.applicant.name, "王小明");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&t.payload)
            .unwrap();
        assert_eq!(bytes, b"\x00\x01payload");
    }

    #[test]
    fn licenses_keep_the_holder_hashed_and_the_name_masked() {
        assert_eq!(masked_name("王小明"), "王**");
        assert_eq!(masked_name("A"), "A");
        assert_eq!(masked_name(""), "");
        let found = wire::License {
            license_id: "440000-MC-1".into(),
            license_type: "marriage_certificate".into(),
            issuing_region: "440000".into(),
            holder_id_number: "110105198001019010".into(),
            holder_name: "王小明".into(),
            fields: Default::default(),
            valid_from: "2020-05-20".into(),
            valid_until: None,
            issued_at: "2020-05-20T10:00:00+08:00".into(),
            revoked_at: Some("2026-01-01T00:00:00Z".into()),
            revocation_reason: Some("annulled".into()),
        };
        let record = license(found.clone(), b"key").unwrap();
        let id = ResidentId::parse(
            "110105198001019010",
            RegionTable::embedded(),
            calendar::business_now().date(),
        )
        .unwrap();
        assert_eq!(record.holder_hash, id.keyed_hash(b"key"));
        assert_eq!(record.holder_name_masked, "王**");
        assert_eq!(record.revoked_ms, Some(1_767_225_600_000));
        let bad = wire::License {
            holder_id_number: "110105198001019011".into(),
            ..found
        };
        let err = license(bad, b"key").unwrap_err().to_string();
        assert!(!err.contains("11010519800101901"), "{err}");
    }

    #[test]
    fn persons_map_their_assurance_level_and_must_be_the_one_asked() {
        let found = |level: &str| wire::Person {
            id_number: "32010619870412906X".into(),
            name: "李华".into(),
            home_region: "320106".into(),
            assurance_level: level.into(),
        };
        let p = person(found("substantial"), "32010619870412906x").unwrap();
        assert_eq!(p.level, AssuranceLevel::Substantial);
        assert!(person(found("gold"), "32010619870412906X").is_err());
        let err = person(found("high"), "110105198001019010").unwrap_err();
        assert!(!err.to_string().contains("3201061987"), "{err}");
    }

    #[test]
    fn cursors_and_ids_are_escaped_in_paths_and_queries() {
        assert_eq!(escape("440000-MC-1"), "440000-MC-1");
        assert_eq!(escape("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(
            feed_path("/v1/case-events", "", 0),
            "/v1/case-events?limit=1"
        );
        assert_eq!(
            feed_path("/v1/revocations", "x=1", 5000),
            "/v1/revocations?after=x%3D1&limit=1000"
        );
    }
}

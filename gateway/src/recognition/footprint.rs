//! What the recognition service holds, in bytes: the estimates that bound its caches by
//! bytes (moka's weigher, `cache`) and that a lookup's call is charged for what it
//! buffers and decodes (an issuer's answer, a verdict's copy of a cached entry), and
//! the handle those charges go through ([`Charges`]).
//!
//! Estimates count each heap allocation as glibc's malloc takes it (at least 32 bytes,
//! in 16-byte steps, 8 of them its header), so a map of many short strings is not
//! counted as if it were one string of their length: a hostile issuer's answer decodes
//! to several times its size, and that is what the gateway must be charged for.

use std::sync::Mutex;

use super::verify::{CheckedLicense, Refusal};
use crate::{error::GatewayError, message::Budget};

/// The bytes a value holds: itself and what it owns. Parts shared with every other
/// value (an interned type name) are not counted; parts shared with a few (a holder
/// list's licenses, also cached on their own) are, so an estimate errs high.
pub trait Footprint {
    fn bytes(&self) -> usize;
}

/// What one cached entry costs beyond its value: moka's bookkeeping (its map slot, the
/// key, the access-order node, its share of the frequency sketch) and the `Arc` around
/// the value. Measured with moka 0.12.16: 100,000 entries of a 16-byte key and an
/// 8-byte value grew the heap by 290 bytes and the RSS by 400 bytes each.
pub const ENTRY_OVERHEAD: usize = 400;

/// The bytes malloc takes for an allocation of `len` bytes (none for zero).
pub const fn heap(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let chunk = (len + 8 + 15) & !15;
    if chunk < 32 { 32 } else { chunk }
}

impl Footprint for Refusal {
    fn bytes(&self) -> usize {
        heap(self.detail.capacity())
    }
}

impl Footprint for CheckedLicense {
    fn bytes(&self) -> usize {
        let slots = std::mem::size_of_val::<[(Box<str>, Box<str>)]>(&self.fields);
        let strings: usize = self
            .fields
            .iter()
            .map(|(k, v)| heap(k.len()) + heap(v.len()))
            .sum();
        heap(slots) + strings
    }
}

impl<T: Footprint, E: Footprint> Footprint for Result<T, E> {
    fn bytes(&self) -> usize {
        match self {
            Ok(t) => t.bytes(),
            Err(e) => e.bytes(),
        }
    }
}

/// What a lookup buffers is charged to: its call's admission permit (`None` where
/// nothing admits, in tests). Shared by the lookup's steps, the issuer call among them,
/// behind a lock held only while charging.
pub struct Charges<'a>(Option<Mutex<&'a mut (dyn Budget + Send)>>);

impl<'a> Charges<'a> {
    pub fn to(budget: &'a mut (dyn Budget + Send)) -> Self {
        Self(Some(Mutex::new(budget)))
    }

    /// Charges to nothing.
    pub fn none() -> Self {
        Self(None)
    }

    /// Charges `bytes` more to the call; refused (RESOURCE_EXHAUSTED) over the
    /// gateway's budget or the origin's share of it. Given back when the call ends.
    pub fn charge(&self, bytes: usize) -> Result<(), GatewayError> {
        match &self.0 {
            Some(budget) => budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .charge(bytes),
            None => Ok(()),
        }
    }
}

impl Budget for &Charges<'_> {
    fn charge(&mut self, bytes: usize) -> Result<(), GatewayError> {
        Charges::charge(self, bytes)
    }
}

/// Most levels of nested messages [`decoded_bytes`] walks into: a holder list's
/// signed licenses' bodies' field entries' strings are five deep.
const MAX_DEPTH: usize = 5;

/// What decoding one length-delimited field costs beyond its allocation: its slot in
/// the struct, map node or vector that holds it (a `String` is 24 bytes, `Bytes` 32, a
/// `BTreeMap` entry about twice its key and value as nodes are half full on average).
const FIELD_OVERHEAD: usize = 48;

/// An upper estimate of the bytes that decoding the protobuf message `wire` and
/// checking what it carries hold at once, before anything is decoded: each
/// length-delimited field is counted as its own allocation and slot, and, when its
/// bytes are a well-formed message themselves, walked into too (a nested message, a
/// map entry, or a signed body, which is kept as bytes and decoded again when checked).
/// A string that happens to look like a message is counted twice: the estimate errs
/// high, never low. Bytes that are no message at all decode to nothing.
pub fn decoded_bytes(wire: &[u8]) -> usize {
    walk(wire, MAX_DEPTH).unwrap_or(0)
}

fn walk(mut wire: &[u8], depth: usize) -> Option<usize> {
    let mut total = 0usize;
    while !wire.is_empty() {
        let key = varint(&mut wire)?;
        if key >> 3 == 0 {
            return None;
        }
        match key & 7 {
            0 => {
                varint(&mut wire)?;
                total += 8;
            }
            1 => {
                wire = wire.get(8..)?;
                total += 8;
            }
            5 => {
                wire = wire.get(4..)?;
                total += 4;
            }
            2 => {
                let len = usize::try_from(varint(&mut wire)?).ok()?;
                let (field, rest) = wire.split_at_checked(len)?;
                wire = rest;
                let nested = match depth {
                    0 => 0,
                    _ => walk(field, depth - 1).unwrap_or(0),
                };
                total = total.saturating_add(FIELD_OVERHEAD + heap(len) + nested);
            }
            // Groups (3, 4) are not in the contract; 6 and 7 are no wire types.
            _ => return None,
        }
    }
    Some(total)
}

/// Reads one varint off the front of `wire`.
fn varint(wire: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in wire.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *wire = &wire[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use prost::Message;
    use tongban_proto::v1::{
        FetchHolderLicensesResponse, FetchLicenseResponse, License, SignedObject,
    };

    #[test]
    fn allocations_are_counted_as_malloc_takes_them() {
        assert_eq!(heap(0), 0);
        assert_eq!(heap(1), 32);
        assert_eq!(heap(24), 32);
        assert_eq!(heap(25), 48);
        assert_eq!(heap(4096), 4112);
    }

    fn signed(license: &License) -> SignedObject {
        SignedObject {
            body: license.encode_to_vec().into(),
            key_id: "44-k1".into(),
            signature: vec![7; 64].into(),
        }
    }

    #[test]
    fn many_small_fields_are_counted_far_above_their_wire_size() {
        let small = License {
            license_id: "440000-1".into(),
            ..Default::default()
        };
        let many = License {
            fields: (0..10_000)
                .map(|i| (format!("f{i}"), String::new()))
                .collect(),
            ..small.clone()
        };
        let answer = |l: &License| FetchLicenseResponse {
            license: Some(signed(l)),
        };
        let wire = answer(&many).encode_to_vec();
        let estimate = decoded_bytes(&wire);
        // Each entry is 9 bytes on the wire and at least a slot and a string decoded.
        assert!(estimate > 10_000 * (FIELD_OVERHEAD + 32), "{estimate}");
        assert!(estimate > 10 * wire.len(), "{estimate} for {}", wire.len());
        let small_estimate = decoded_bytes(&answer(&small).encode_to_vec());
        assert!(small_estimate < 1024, "{small_estimate}");
        // A holder list walks into each signed body too.
        let list = FetchHolderLicensesResponse {
            licenses: vec![signed(&many), signed(&many)],
        };
        assert!(decoded_bytes(&list.encode_to_vec()) > 2 * 10_000 * FIELD_OVERHEAD);
    }

    #[test]
    fn bytes_that_are_no_message_decode_to_nothing() {
        assert_eq!(decoded_bytes(&[0x0f, 0x00]), 0);
        assert_eq!(decoded_bytes(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff]), 0);
        assert_eq!(decoded_bytes(&[0x08; 11]), 0);
        assert_eq!(decoded_bytes(&[]), 0);
    }

    #[test]
    fn charges_reach_the_budget_through_a_shared_handle() {
        struct Counted(usize);
        impl Budget for Counted {
            fn charge(&mut self, bytes: usize) -> Result<(), GatewayError> {
                self.0 += bytes;
                if self.0 > 100 {
                    return Err(GatewayError::Overloaded("full".into()));
                }
                Ok(())
            }
        }
        let mut budget = Counted(0);
        {
            let charges = Charges::to(&mut budget);
            let shared = &charges;
            shared.charge(60).unwrap();
            let mut as_budget = &charges;
            Budget::charge(&mut as_budget, 30).unwrap();
            assert!(shared.charge(20).is_err());
            assert!(Charges::none().charge(usize::MAX).is_ok());
        }
        assert_eq!(budget.0, 110);
    }
}

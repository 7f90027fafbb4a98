//! What vouches for a cached verdict: the registry generation it was judged under and
//! the registered key that signed it (see `trust`, which drops what no longer stands).

use std::time::SystemTime;

use tongban_proto::rules::region::RegionPrefix;

use crate::registry::{IssuerKey, Registry, Route};

/// What vouches for a cached verdict.
#[derive(Clone, Debug)]
pub enum Voucher {
    /// A registered key of `region`'s route (a positive verdict).
    Key {
        region: RegionPrefix,
        id: Box<str>,
        public_key: [u8; 32],
    },
    /// A revocation the issuer signed: it does not heal, whatever the registry says.
    Revoked,
    /// Nothing a registry change leaves standing (a negative verdict).
    Nothing,
}

/// The registry generation a verdict was judged under, and what vouched for it.
#[derive(Clone, Debug)]
pub struct Signer {
    pub generation: u64,
    pub voucher: Voucher,
}

impl Signer {
    /// Vouched for by key `id` of `route` (nothing if the route has no such key).
    pub fn key(route: &Route, id: &str, generation: u64) -> Self {
        let voucher = match route.issuer_keys.iter().find(|k| k.id == id) {
            Some(key) => Voucher::Key {
                region: route.prefix,
                id: id.into(),
                public_key: key.public_key,
            },
            None => Voucher::Nothing,
        };
        Self {
            generation,
            voucher,
        }
    }

    pub fn nothing(generation: u64) -> Self {
        Self {
            generation,
            voucher: Voucher::Nothing,
        }
    }

    /// The heap bytes it holds (for the caches' weights).
    pub fn heap_bytes(&self) -> usize {
        match &self.voucher {
            Voucher::Key { id, .. } => super::footprint::heap(id.len()),
            _ => 0,
        }
    }

    /// Whether it still stands under generation `generation`, with `keys` the issuer
    /// keys that generation registers for the entry's region (`None`: no route).
    pub fn stands(&self, keys: Option<&[IssuerKey]>, generation: u64, now: SystemTime) -> bool {
        if self.generation >= generation {
            return true;
        }
        match (&self.voucher, keys) {
            (Voucher::Revoked, _) => true,
            (Voucher::Nothing, _) | (Voucher::Key { .. }, None) => false,
            (Voucher::Key { id, public_key, .. }, Some(keys)) => keys
                .iter()
                .any(|k| *k.id == **id && k.public_key == *public_key && k.valid_at(now)),
        }
    }

    /// As [`Self::stands`], finding the route of the key's region in `registry`.
    pub fn stands_in(&self, registry: &Registry, generation: u64, now: SystemTime) -> bool {
        let route = match &self.voucher {
            Voucher::Key { region, .. } => registry.routes().find(|r| r.prefix == *region),
            _ => None,
        };
        self.stands(route.map(|r| r.issuer_keys.as_slice()), generation, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(id: &str, byte: u8, until: SystemTime) -> IssuerKey {
        IssuerKey {
            id: id.into(),
            public_key: [byte; 32],
            not_before: SystemTime::UNIX_EPOCH,
            not_after: until,
        }
    }

    /// What a registry change leaves standing, judged as a call of a later generation
    /// reads it (the entry of a lookup that raced the change included).
    #[test]
    fn only_a_key_still_registered_and_valid_vouches_across_a_registry_change() {
        let now = SystemTime::now();
        let later = now + Duration::from_secs(3600);
        let old = [key("44-k1", 1, later)];
        let positive = Signer {
            generation: 3,
            voucher: Voucher::Key {
                region: RegionPrefix::parse("44").unwrap(),
                id: "44-k1".into(),
                public_key: [1; 32],
            },
        };
        let negative = Signer::nothing(3);
        let revoked = Signer {
            generation: 3,
            voucher: Voucher::Revoked,
        };
        // The same generation: everything stands, as judged.
        for s in [&positive, &negative, &revoked] {
            assert!(s.stands(Some(&old), 3, now));
        }
        // A later generation with the key still there: the positive one stands, the
        // negative one does not (it must not outlive the reload that fixed it).
        assert!(positive.stands(Some(&old), 4, now));
        assert!(!negative.stands(Some(&old), 4, now));
        assert!(revoked.stands(Some(&old), 4, now));
        // The key removed, re-registered with other bytes, or its window closed.
        let removed = [key("44-k2", 2, later)];
        let replaced = [key("44-k1", 9, later)];
        let closed = [key("44-k1", 1, now - Duration::from_secs(1))];
        for keys in [&removed, &replaced, &closed] {
            assert!(!positive.stands(Some(keys), 4, now));
        }
        // The region gone from the registry.
        assert!(!positive.stands(None, 4, now));
        assert!(revoked.stands(None, 4, now));
    }
}

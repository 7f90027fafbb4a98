//! Caps on the connections a listener holds open: in all, and per client address.
//!
//! A connection takes a [`Slot`] as soon as it is accepted and gives it back when it is
//! dropped, however the connection ended (a panic in its task included, since the slot
//! is dropped with the task). Beyond either cap the caller closes the connection at
//! once: it never reaches HTTP, so it holds nothing but the instant of its accept.
//!
//! The total is a Tokio [`Semaphore`]. The per-address share is written here: tower's
//! and hyper's limits count requests or connections of one service as a whole, and none
//! keys a count by the peer's address (`tower_governor` and the like limit request
//! *rates*, not connections held open, which is what a slowloris attack spends).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its whole cap of connections.
    Full,
    /// This client address holds its whole share.
    ClientShare,
}

/// The slots of one listener.
#[derive(Clone, Debug)]
pub struct ConnectionSlots {
    total: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client_share: usize,
}

/// One connection's place; given back on drop.
#[derive(Debug)]
pub struct Slot {
    _total: OwnedSemaphorePermit,
    client: ClientShare,
}

impl Slot {
    /// The client this slot is counted against ([`client_key`]).
    pub fn client(&self) -> IpAddr {
        self.client.address
    }
}

/// One connection counted against its client's share.
#[derive(Debug)]
struct ClientShare {
    address: IpAddr,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        // A poisoned map is still a consistent count: every change is one statement.
        let mut counts = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // The map holds only addresses with open connections, so it is never
                // larger than the total cap.
                counts.remove(&self.address);
            }
        }
    }
}

/// The key a client's connections are counted under: an IPv4 address (also when seen
/// as an IPv4-mapped IPv6 address on a dual-stack listener), or an IPv6 /64 prefix, since
/// one host is usually given a whole /64 and a per-address share there would bound
/// nothing. The federation listener's handshake shares use the same rule.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl ConnectionSlots {
    /// `total` connections at once, at most `per_client` of them from one address (both
    /// at least 1).
    pub fn new(total: usize, per_client: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_client: Arc::new(Mutex::new(HashMap::new())),
            client_share: per_client.max(1),
        }
    }

    /// A slot for a connection from `client`, or why there is none (never waits). The
    /// client's share is checked first, so a client over it is told so even while the
    /// listener is full.
    pub fn try_take(&self, client: IpAddr) -> Result<Slot, Refusal> {
        let address = client_key(client);
        {
            let mut counts = self
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = counts.entry(address).or_insert(0);
            if *count >= self.client_share {
                return Err(Refusal::ClientShare);
            }
            *count += 1;
        }
        // From here the guard gives the client's count back, also when the listener's
        // own slots are all taken.
        let client = ClientShare {
            address,
            per_client: self.per_client.clone(),
        };
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        Ok(Slot {
            _total: total,
            client,
        })
    }

    /// Slots free now at the listener.
    pub fn free(&self) -> usize {
        self.total.available_permits()
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_client_gets_its_share_and_the_listener_its_total() {
        let slots = ConnectionSlots::new(5, 2);
        let a1 = slots.try_take(ip(1)).unwrap();
        let _a2 = slots.try_take(ip(1)).unwrap();
        assert_eq!(slots.try_take(ip(1)).unwrap_err(), Refusal::ClientShare);
        let _b: Vec<Slot> = (0..2).map(|_| slots.try_take(ip(2)).unwrap()).collect();
        let _c = slots.try_take(ip(3)).unwrap();
        assert_eq!(slots.open(), 5);
        assert_eq!(slots.try_take(ip(4)).unwrap_err(), Refusal::Full);
        // Once one is given back, the free slot goes to a client whose share allows it.
        drop(a1);
        assert_eq!(slots.try_take(ip(2)).unwrap_err(), Refusal::ClientShare);
        let again = slots.try_take(ip(1)).unwrap();
        assert_eq!((again.client(), slots.open()), (ip(1), 5));
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_address_is_itself() {
        let slots = ConnectionSlots::new(8, 1);
        let _one = slots.try_take("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            slots.try_take("2001:db8::2".parse().unwrap()).unwrap_err(),
            Refusal::ClientShare
        );
        assert!(slots.try_take("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = slots.try_take(ip(9)).unwrap();
        assert_eq!(
            slots
                .try_take("::ffff:127.0.0.9".parse().unwrap())
                .unwrap_err(),
            Refusal::ClientShare
        );
    }

    #[test]
    fn slots_come_back_from_a_panicking_task() {
        let slots = ConnectionSlots::new(1, 1);
        let slot = slots.try_take(ip(1)).unwrap();
        let result = std::thread::spawn(move || {
            let _held = slot;
            panic!("connection task fails");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(slots.open(), 0);
        assert!(slots.try_take(ip(1)).is_ok());
    }
}

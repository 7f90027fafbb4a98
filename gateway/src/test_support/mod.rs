//! What the gateway's unit tests share: a stand-in issuing node with recognition
//! services that ask it (`issuer`), and a PostgreSQL database per test (`postgres`).

pub mod issuer;
pub mod postgres;

/// A number no other call in this process got (for folder and database names).
pub fn unique_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

//! One sampling instant of the console: the gateway's reading and the nodes'.

use std::{collections::BTreeMap, time::Instant};

use super::reading::Reading;

/// What the console read at one instant.
#[derive(Clone)]
pub struct Sample {
    pub at: Instant,
    pub unix_ms: u64,
    pub gateway: Reading,
    /// Region code → that node's reading, or why it could not be read.
    pub nodes: BTreeMap<String, Result<Reading, String>>,
}

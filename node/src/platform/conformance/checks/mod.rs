//! The checks, one file per area, each a plain function of the probe, the findings of
//! the checks before it and its own [`Step`](super::step::Step):
//! - `transport`: 1 TLS, 2 health, 3 authentication required;
//! - `cases`: 4 take-over, 5 repeated take-over, 6 conflict, 7 read case;
//! - `feed`: 8 order, 9 paging, 10 resumption of the case-event feed;
//! - `codes`: 11 every status code mapped;
//! - `register`: 12 the revocation feed;
//! - `errors`: 13 precise errors for bad requests;
//! - `timing`: 14 answers within the timeout.

pub mod cases;
pub mod codes;
pub mod errors;
pub mod feed;
pub mod register;
pub mod timing;
pub mod transport;

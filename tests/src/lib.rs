//! Integration and fault tests against real gateways and nodes on loopback with real
//! mTLS. The tests are in `tests/`; what starts and drives their federations is the
//! kit, `tongban-kit` (its `testing` module holds the helpers tests share).

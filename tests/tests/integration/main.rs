//! The integration and fault tests in one binary, a module per area (as linkerd2-proxy's
//! integration crate does): real gateways and nodes on loopback with real mTLS, started
//! and driven by `tongban_kit`. One binary links once instead of once per area.
//!
//! The areas share this process and run in parallel, so a test must not change what
//! the others see of it: no test sets process environment variables (a node process
//! gets its own through `LocalFederation::set_node_env`), the one log subscriber is
//! installed once by the kit, every federation lives in its own temporary folder on its
//! own ports, and what a test counts it reads from its own members (metrics, trails,
//! platforms), never from the process as a whole.

mod audit;
mod backup;
mod calendar;
mod catalog_lists;
mod console;
mod delegated_cities;
mod disputes;
mod evaluations;
mod examples;
mod fan_out;
mod faults;
mod federation;
mod fuzz_seeds;
mod gateway_server;
mod greedy_flood;
mod handshake_flood;
mod hostile;
mod issuer_answers;
mod joint_handling;
mod kit;
mod layout;
mod metrics;
mod national_license_ids;
mod operators;
mod outbox;
mod overload;
mod personal_data;
mod platform_conformance;
mod platform_faults;
mod platforms;
mod pre_review;
mod prometheus;
mod recognition;
mod reflection_clients;
mod replicas;
mod requirements;
mod reset_storm;
mod revocation;
mod revocation_crash;
mod revocation_flood;
mod revocation_log;
mod sharing_list;
mod signed_messages;
mod slowloris;
mod small_frames;
mod time_limits;
mod traces;
mod trust;
mod trust_changes;
mod upstream;

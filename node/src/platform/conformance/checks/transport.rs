//! Checks 1–3: the connection as the node makes it. TLS (a failure named by the node's
//! own `http::tls::explain`), health, and that calls without valid credentials are
//! refused.

use crate::platform::{
    conformance::{
        call::{Call, Credentials, Reply},
        probe::Probe,
        report::Verdict,
        step::Step,
    },
    contract::wire::Health,
};

/// 1: the handshake completes and an HTTP answer comes back over it.
pub async fn tls(probe: &Probe, step: &mut Step) -> Verdict {
    let reply = probe.send(step, Call::get("health", "/v1/health")).await;
    match (reply.status, &reply.failure) {
        (Some(status), _) => Verdict::pass(format!(
            "TLS with {} completed (the platform's certificate verified against the given CA{}) \
             and an HTTP answer ({status}) came over it",
            probe.url(),
            if probe.has_client_cert() {
                ", the client certificate accepted"
            } else {
                ""
            }
        )),
        (None, Some(failure)) if failure.timed_out => Verdict::fail(format!(
            "{}: neither the TLS handshake nor an answer completed within the timeout of {} ms",
            probe.url(),
            probe.timeout().as_millis()
        )),
        (None, failure) => Verdict::fail(
            failure
                .as_ref()
                .map_or_else(|| "no answer".to_owned(), |f| f.sentence.clone()),
        ),
    }
}

/// 2: `GET /v1/health` answers `200 {status: ok}`.
pub async fn health(probe: &Probe, step: &mut Step) -> Verdict {
    let reply = probe.send(step, Call::get("health", "/v1/health")).await;
    match reply.status {
        Some(200) => match reply.expect_json::<Health>(200) {
            Ok(health) if health.status == "ok" => {
                Verdict::pass("the platform answered 200 {\"status\": \"ok\"}: it takes cases")
            }
            Ok(health) => Verdict::fail(format!(
                "the platform answered 200 with status {:?} (detail {:?}); the contract's \
                 healthy answer is status \"ok\"",
                health.status, health.detail
            )),
            Err(e) => Verdict::fail(e),
        },
        Some(503) => {
            let detail = serde_json::from_slice::<Health>(&reply.body)
                .map(|h| h.detail)
                .or_else(|_| {
                    serde_json::from_slice::<crate::platform::contract::wire::Problem>(&reply.body)
                        .map(|p| p.detail)
                })
                .unwrap_or_default();
            Verdict::fail(format!(
                "the platform says it is unavailable (503): {}",
                if detail.is_empty() {
                    "no detail given (the contract asks for one)".to_owned()
                } else {
                    detail
                }
            ))
        }
        _ => Verdict::fail(format!("GET /v1/health {}", reply.describe())),
    }
}

/// Whether `reply` is a refusal as the contract makes it: 401 or 403, problem+json.
fn refusal(reply: &Reply) -> Result<String, String> {
    match reply.status {
        Some(status @ (401 | 403)) => reply
            .expect_problem(status)
            .map(|p| format!("refused with {status} ({})", p.kind)),
        _ => Err(reply.describe()),
    }
}

/// 3: the same call without credentials, with wrong ones, and without the client
/// certificate, is refused.
pub async fn authentication(probe: &Probe, step: &mut Step) -> Verdict {
    if !probe.has_client_cert() && !probe.has_auth_headers() {
        return Verdict::skip(
            "no credentials are configured (no client certificate, no bearer token or HMAC \
             key), so there is nothing the platform could refuse; anyone who reaches it can call it",
        );
    }
    let path = "/v1/case-events?limit=1";
    let mut faults = Vec::new();
    let mut seen = Vec::new();
    if probe.has_auth_headers() {
        for (credentials, what) in [
            (Credentials::NoHeaders, "without credentials"),
            (Credentials::WrongHeaders, "with a wrong secret"),
        ] {
            let call = Call::get("case_events", path).credentials(credentials);
            let reply = probe.send(step, call).await;
            match refusal(&reply) {
                Ok(how) => seen.push(format!("{what}: {how}")),
                Err(got) => faults.push(format!(
                    "GET {path} {what} must be refused with 401/403 problem+json, but it {got}"
                )),
            }
        }
    }
    if probe.has_client_cert() {
        let call = Call::get("case_events", path).credentials(Credentials::NoClientCert);
        let reply = probe.send(step, call).await;
        match (&reply.failure, refusal(&reply)) {
            (_, Ok(how)) => seen.push(format!("without the client certificate: {how}")),
            (Some(failure), _) if !failure.timed_out => seen.push(format!(
                "without the client certificate: refused at the handshake ({})",
                failure.sentence
            )),
            (_, Err(got)) => faults.push(format!(
                "GET {path} without the client certificate must be refused, but it {got}"
            )),
        }
    }
    Verdict::from_faults(&faults, seen.join("; "))
}

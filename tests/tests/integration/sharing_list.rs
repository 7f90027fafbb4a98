//! The data-sharing responsibility list (数据共享责任清单) against what a real gateway
//! measures: Guangdong's household registers are committed at 99 %; while 44's node
//! answers, every lookup of one is answered; once it is stopped, new lookups cannot be
//! verified, and the measured availability falls below the commitment — in the
//! gateway's `/metrics` (by issuing province and data) and on the console's table.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tongban_kit::testing::{TestFederation, eventually, start};
use tongban_node::portal_client::PortalClient;
use tongban_proto::v1::VerdictOutcome;

use super::{
    console::{data, operator_proxy},
    recognition::{gateway_as, license_of, lookup},
};

const WAIT: Duration = Duration::from_secs(30);

/// Lookups of 44's household registers by verdict, from the gateway's `/metrics`.
async fn household_registers_of_44(t: &TestFederation) -> (f64, f64) {
    let admin = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    let text = admin.get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap();
    let count = |unanswered: bool| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("tongban_gateway_verdicts_total{"))
            .filter(|l| l.contains("target=\"44\"") && l.contains("data=\"household_register\""))
            .filter(|l| l.contains("verdict=\"cannot_verify_now\"") == unanswered)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let commitment = text
        .lines()
        .find(|l| {
            l.starts_with("tongban_gateway_supply_commitment{")
                && l.contains("target=\"44\"")
                && l.contains("data=\"household_register\"")
                && l.contains("supplier=\"广东省公安厅\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(commitment, Some(0.99), "the commitment is exported");
    (count(false), count(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_availability_falls_below_the_commitment_when_an_issuer_stops() {
    let mut t = start(&["310000", "440000"]).await;
    let residents = t.residents("44");
    let mut licenses = Vec::new();
    for r in residents.iter().take(4) {
        let id = license_of(&t, "44", r.id.as_str(), "household_register").await;
        licenses.push((id, r.id.as_str().to_owned()));
    }
    let mut client = gateway_as(&t, "31").await;
    let (license, holder) = &licenses[0];
    let v = lookup(
        &mut client,
        license,
        "household_register",
        "household-transfer",
        holder,
    )
    .await;
    assert_eq!(v.outcome, VerdictOutcome::Recognized as i32, "{v:?}");
    assert_eq!(household_registers_of_44(&t).await, (1.0, 0.0));

    // 44's node stops: lookups not cached cannot be verified now.
    t.fed.stop_node("44").await.unwrap();
    for (license, holder) in &licenses[1..] {
        let v = lookup(
            &mut client,
            license,
            "household_register",
            "household-transfer",
            holder,
        )
        .await;
        assert_eq!(v.outcome, VerdictOutcome::CannotVerifyNow as i32, "{v:?}");
    }
    let (answered, unanswered) = household_registers_of_44(&t).await;
    assert_eq!((answered, unanswered), (1.0, 3.0));
    let measured = answered / (answered + unanswered);
    assert!(measured < 0.99, "{measured}");

    // The console puts the commitment and the measured share side by side.
    let (addr, _proxy) = operator_proxy(&t).await;
    let console = PortalClient::new(format!("http://{addr}"));
    let row = eventually(WAIT, "the console's supply row", || async {
        let d = data(&console).await;
        let row = d["supply"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == "44" && r["data"] == "household_register")?
            .clone();
        (row["lookups"] == 4.0).then_some(row)
    })
    .await;
    assert_eq!(row["supplier"], "广东省公安厅", "{row}");
    assert_eq!(row["committed"], 0.99, "{row}");
    assert_eq!(row["measured"], 0.25, "{row}");
    assert_eq!(row["below"], true, "{row}");
    t.shutdown().await;
}

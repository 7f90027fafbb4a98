//! The operator console as an operator sees it: a live three-region federation, cases
//! filed, one region stopped; `/console/data` is read with a real HTTP client and the
//! page is loaded in headless Chromium (Debian's package, installed by
//! scripts/test-tools), whose rendered DOM must show every region with its traffic, the
//! stopped region as down, and the failed calls. A screenshot is left in
//! `<target>/test-artifacts/console.png` for a human to look at. `tongban backlog` is
//! checked against the same state.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tongban_kit::testing::{eventually, medical_filing, start, system_tool};
use tongban_node::portal_client::PortalClient;

const WAIT: Duration = Duration::from_secs(30);

pub(super) async fn data(console: &PortalClient) -> Value {
    let answer = console.get("/console/data").await.unwrap();
    assert_eq!(answer.status, 200);
    answer.body
}

fn region<'a>(d: &'a Value, province: &str) -> &'a Value {
    d["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["province"] == province)
        .unwrap_or_else(|| panic!("region {province} missing: {d}"))
}

fn artifacts() -> PathBuf {
    // The test binary runs from <target>/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `url` in headless Chromium, lets its script poll, and returns the DOM.
fn chromium(url: &str, screenshot: Option<&PathBuf>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(system_tool("chromium"));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1500,1100",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A loopback proxy to the gateway's operator listener as the kit's viewer.
pub(super) async fn operator_proxy(
    t: &tongban_kit::testing::TestFederation,
) -> (
    std::net::SocketAddr,
    tongban_runtime::process::shutdown::Shutdown,
) {
    use tongban_runtime::trust::{identity::PeerIdentity, operator_client};
    let pki = t.dir.path().join("pki");
    let viewer =
        tongban_kit::config::pki::operator_credentials(&pki, tongban_kit::config::pki::VIEWER);
    let client = operator_client::OperatorClient::new(
        t.fed.gateway().operator_addr,
        PeerIdentity::Gateway,
        &viewer,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tongban_runtime::process::shutdown::Shutdown::new();
    tokio::spawn(operator_client::proxy(listener, client, shutdown.signal()));
    (addr, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_every_region_its_traffic_and_a_region_going_down() {
    let mut t = start(&["110000", "310000", "440000"]).await;
    // The console as an operator opens it: through `tongban operator proxy`'s loopback
    // proxy, which presents a viewer's certificate to the operator listener.
    let (admin, _proxy) = operator_proxy(&t).await;
    let console = PortalClient::new(format!("http://{admin}"));
    let direct = PortalClient::new(format!("http://{}", t.fed.gateway().admin_addr.unwrap()));
    assert_eq!(direct.get("/console").await.unwrap().status, 404);
    let n31 = t.fed.node("31").unwrap().portal.clone();

    // Guangdong and Beijing applicants file at Shanghai's window; Shanghai's at Beijing's.
    let mut cases = Vec::new();
    for (prefix, n) in [("44", 2), ("11", 1)] {
        for resident in t.residents(prefix).iter().take(n) {
            let receipt = n31.file(&medical_filing(resident)).await.unwrap();
            assert_eq!(receipt.status, 201, "{:?}", receipt.body);
            cases.push(receipt.body["case_number"].as_str().unwrap().to_owned());
        }
    }
    for case in &cases {
        eventually(WAIT, &format!("{case} approved"), || async {
            let s = n31.status(case).await.ok()?;
            (s.body["stage"] == "approved").then_some(())
        })
        .await;
    }

    // The sampler (every 2 s) has seen the traffic, the approvals and every node.
    let d = eventually(WAIT, "console sees the traffic", || async {
        let d = data(&console).await;
        let approved: f64 = d["fairness"]["rows"]
            .as_array()?
            .iter()
            .map(|r| r["approved"].as_f64().unwrap_or(0.0))
            .sum();
        (approved >= 3.0 && d["nodes"].as_array()?.len() == 3).then_some(d)
    })
    .await;
    assert_eq!(d["call_metrics"], true);
    for province in ["11", "31", "44"] {
        let r = region(&d, province);
        assert_eq!(r["endpoints_up"], 1, "{r}");
        assert_eq!(r["endpoints"], 1, "{r}");
        assert!(r["inbound_total"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(!r["name"].as_str().unwrap().is_empty(), "{r}");
    }
    assert_eq!(region(&d, "44")["name"], "广东省");
    let shanghai_to_guangdong = d["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["origin"] == "31" && c["target"] == "44")
        .unwrap();
    assert!(shanghai_to_guangdong["total"].as_f64().unwrap() >= 2.0);
    let fairness = d["fairness"]["rows"].as_array().unwrap();
    let home44 = fairness.iter().find(|r| r["home_region"] == "44").unwrap();
    assert_eq!(home44["approved"], 2.0, "{home44}");
    assert_eq!(home44["filings"], 2.0, "{home44}");
    assert_eq!(home44["approval_ratio"], 1.0, "{home44}");
    for node in d["nodes"].as_array().unwrap() {
        assert_eq!(node["error"], "", "{node}");
        assert!(
            node["certificate_days_left"].as_f64().unwrap() > 1.0,
            "{node}"
        );
    }
    assert!(
        d["caches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cache"] == "identity" && c["misses"].as_f64().unwrap() > 0.0),
        "{d}"
    );

    // Guangdong's node goes away; a Guangdong applicant files at Shanghai's window.
    t.fed.stop_node("44").await.unwrap();
    let resident = t.residents("44")[3].clone();
    let _ = n31.file(&medical_filing(&resident)).await.unwrap();
    let d = eventually(WAIT, "console shows Guangdong down", || async {
        let d = data(&console).await;
        let down = region(&d, "44")["endpoints_up"] == 0;
        let failed = d["recent_errors"]
            .as_array()?
            .iter()
            .any(|e| e["target"].as_str().is_some_and(|t| t.starts_with("44")));
        let node_unreachable = d["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["region"] == "440000" && n["error"] != "");
        (down && failed && node_unreachable).then_some(d)
    })
    .await;
    // The lookups of the Guangdong applicant's identity and licenses cannot be verified:
    // the verdict (not a gRPC error) is what the console counts and lists.
    let error = &d["recent_errors"][0];
    assert_eq!(error["code"], "cannot_verify_now", "{error}");
    assert!(
        ["VerifyIdentity", "ListLicenses"].contains(&error["method"].as_str().unwrap_or("")),
        "{error}"
    );
    assert_eq!(error["origin"], "31", "{error}");
    assert!(region(&d, "44")["cannot_verify_total"].as_f64().unwrap() >= 1.0);
    assert_eq!(region(&d, "11")["endpoints_up"], 1);

    // The operator's CLI shows the same backlog: Shanghai's entry waiting for Guangdong,
    // and Guangdong's node unreachable (so the command fails).
    let n31_admin = format!("http://{}", t.fed.node("31").unwrap().admin_addr);
    let node44_config = t.dir.path().join("node-44.toml");
    let tongban = tongban_kit::testing::cli_binary();
    let out = Command::new(&tongban)
        .args(["backlog", "--node", &n31_admin, "--node"])
        .arg(&node44_config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let waiting = text
        .lines()
        .find(|l| l.starts_with(&n31_admin) && l.split_whitespace().nth(1) == Some("44"))
        .unwrap_or_else(|| panic!("no backlog row 31 -> 44:\n{text}"));
    let pending: f64 = waiting.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(pending >= 1.0, "{text}");
    assert!(text.contains("unreachable"), "{text}");

    // What a browser shows: every region's row with its traffic, Guangdong down.
    let url = format!("http://{admin}/console");
    let dom = chromium(&url, None);
    for province in ["11", "31", "44"] {
        let row = dom
            .split(&format!("data-region=\"{province}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {province} in the rendered page:\n{dom}"));
        let total: f64 = row
            .split("data-inbound-total=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        assert!(total > 0.0, "{province} shows no traffic");
    }
    let (method, code) = (
        error["method"].as_str().unwrap(),
        error["code"].as_str().unwrap(),
    );
    for text in ["北京市", "上海市", "广东省", "0/1", method, code] {
        assert!(dom.contains(text), "the page does not show {text}:\n{dom}");
    }
    assert!(dom.contains("data-home=\"44\""), "{dom}");
    assert!(dom.contains("data-node=\"440000\""), "{dom}");
    assert!(
        dom.contains("id=\"status\">updated "),
        "the page's script did not render the data:\n{dom}"
    );
    let shot = artifacts().join("console.png");
    chromium(&url, Some(&shot));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    t.shutdown().await;
}

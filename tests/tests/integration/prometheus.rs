//! The alert rules and the dashboard against real Prometheus (Debian's package):
//! `promtool` checks and unit-tests the rules, and a real Prometheus scrapes a running
//! federation, loads the rules, evaluates them without error, and holds every series the
//! rules and the dashboard use.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tongban_kit::testing::{eventually, medical_filing, start_with, system_tool};
use tongban_node::portal_client::PortalClient;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(system_tool("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_rules_and_the_config() {
    let dir = deploy().join("prometheus");
    let checked = promtool(&["check", "rules", "tongban-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "tongban-rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&["check", "config", "prometheus.yml"], &dir);
}

/// Metric names a PromQL text uses (ours and the standard process ones). Recording
/// rules' names (`tongban:...`) are not metric names and split apart here.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("tongban_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Every expression in the rules file and the dashboard.
fn expressions() -> Vec<String> {
    let rules = std::fs::read_to_string(deploy().join("prometheus/tongban-rules.yml")).unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/tongban-federation.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = vec![rules];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    exprs
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn api(prometheus: &PortalClient, path: &str) -> Value {
    let answer = prometheus.get(path).await.unwrap();
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    answer.body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_federation_and_evaluates_every_rule() {
    // With the shared revocation log, so its series (and alerts) are there too.
    let t = start_with(&["110000", "310000", "440000"], |spec| {
        spec.shared_revocation_log = true;
    })
    .await;
    let work = t.dir.path().join("prometheus");
    std::fs::create_dir_all(&work).unwrap();
    // The rules as shipped, evaluated every second instead of every 30 s.
    let rules = std::fs::read_to_string(deploy().join("prometheus/tongban-rules.yml"))
        .unwrap()
        .replace("interval: 30s", "interval: 1s");
    std::fs::write(work.join("tongban-rules.yml"), rules).unwrap();
    let nodes: Vec<String> = ["11", "31", "44"]
        .iter()
        .map(|p| format!("\"{}\"", t.fed.node(p).unwrap().admin_addr))
        .collect();
    let gateway = t.fed.gateway().admin_addr.unwrap();
    std::fs::write(
        work.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [tongban-rules.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: tongban-gateway\n    static_configs: [{{targets: [\"{gateway}\"]}}]\n\
             \x20 - job_name: tongban-node\n    static_configs: [{{targets: [{}]}}]\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(work.join("prometheus.log")).unwrap();
    let _prometheus = KillOnDrop(
        Command::new(system_tool("prometheus"))
            .current_dir(&work)
            .args([
                "--config.file=prometheus.yml",
                "--storage.tsdb.path=data",
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let prometheus = PortalClient::new(format!("http://127.0.0.1:{port}"));

    // Every target up.
    let limit = Duration::from_secs(30);
    eventually(limit, "all four targets scraped and up", || async {
        let targets = prometheus.get("/api/v1/targets").await.ok()?;
        let active = targets.body["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 4 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;

    // Traffic once Prometheus scrapes: two cross-region cases, decided and pushed back.
    let n31 = t.fed.node("31").unwrap();
    let mut decided = Vec::new();
    for prefix in ["44", "11"] {
        let resident = &t.residents(prefix)[0];
        let receipt = n31.portal.file(&medical_filing(resident)).await.unwrap();
        assert_eq!(receipt.status, 201, "{:?}", receipt.body);
        let case = receipt.body["case_number"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(20), "approved", || async {
            let s = n31.portal.status(&case).await.ok()?;
            (s.body["stage"] == "approved").then_some(())
        })
        .await;
        decided.push(case);
    }
    // The citizen of the first case rates it poorly: counted at 31, a follow-up at 44.
    let token = n31.portal.token_of(&decided[0]).unwrap();
    let rated = n31
        .portal
        .send_with(
            "POST",
            &format!("/v1/applications/{}/evaluation", decided[0]),
            bytes::Bytes::from_static(br#"{"level": "dissatisfied"}"#),
            &[
                ("tongban-receipt-token", token.as_str()),
                ("content-type", "application/json"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rated.status, 201, "{}", rated.body);

    // Every series the rules and the dashboard use exists.
    let mut wanted = BTreeSet::new();
    for expr in expressions() {
        wanted.extend(metric_names(&expr));
    }
    assert!(wanted.len() >= 12, "{wanted:?}");
    let missing = eventually(limit, "every series scraped", || async {
        let mut missing = Vec::new();
        for name in &wanted {
            let series = api(&prometheus, &format!("/api/v1/series?match[]={name}")).await;
            if series.as_array().is_none_or(|s| s.is_empty()) {
                missing.push(name.clone());
            }
        }
        missing.is_empty().then_some(missing)
    })
    .await;
    assert!(missing.is_empty());

    // Every rule loaded and evaluated without error; no alert fires in a healthy
    // federation.
    let rules_file =
        std::fs::read_to_string(deploy().join("prometheus/tongban-rules.yml")).unwrap();
    let rule_count = rules_file
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    assert!(rule_count >= 17, "{rule_count} rules in the file");
    let groups = eventually(limit, "every rule evaluated", || async {
        let rules = api(&prometheus, "/api/v1/rules").await;
        let groups = rules["groups"].as_array()?.clone();
        let all: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        (all.len() == rule_count && all.iter().all(|r| r["health"] == "ok")).then_some(groups)
    })
    .await;
    assert_eq!(groups.len(), 2);
    let alerts = api(&prometheus, "/api/v1/alerts").await;
    let firing: Vec<_> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "{firing:#?}");

    // The recording rules yield per-province series from the live data.
    let provinces = eventually(limit, "calls per province recorded", || async {
        let calls = api(
            &prometheus,
            "/api/v1/query?query=tongban:gateway_calls:rate5m",
        )
        .await;
        let provinces: BTreeSet<String> = calls["result"]
            .as_array()?
            .iter()
            .filter_map(|s| s["metric"]["target"].as_str().map(str::to_owned))
            .collect();
        (provinces.contains("44") && provinces.contains("11")).then_some(provinces)
    })
    .await;
    assert!(
        provinces.contains("31"),
        "status pushes go to 31: {provinces:?}"
    );
    t.shutdown().await;
}

//! The demo: a local federation of three regions, cross-region filings through the
//! portal API — identities verified with the home region and materials recognized
//! from electronic licenses of other regions, then served from the gateway's cache, and
//! a featured one-thing one region published and another adopted — and a table of what
//! happened.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tongban_kit::{FederationSpec, LocalFederation, RunningNode, testing::featured_medical_item};
use tongban_node::platform::embedded::{SyntheticResident, synthetic_residents};
use tongban_proto::rules::region::{RegionPrefix, RegionTable};
use tongban_runtime::process::shutdown::ShutdownSignal;

/// What a scenario must end in.
enum Expect {
    /// Filed (201), forwarded where needed, and approved by the handling region.
    Approved { handling_prefix: String },
    /// Refused at the portal with this HTTP status, naming this field.
    Refused { status: u16, field: &'static str },
}

struct Scenario {
    label: &'static str,
    origin: String,
    filing: Value,
    expect: Expect,
}

struct Outcome {
    origin: String,
    target: String,
    one_thing: String,
    case_number: String,
    promised: String,
    status: String,
    filed_ms: f64,
    done_ms: Option<f64>,
    /// Materials recognized from licenses, with their issuing regions' prefixes.
    recognized: String,
    /// Lookups answered from the gateway's cache (identity and licenses).
    cached: usize,
    ok: bool,
}

fn resident<'a>(
    residents: &'a [(String, Vec<SyntheticResident>)],
    prefix: &str,
    i: usize,
) -> &'a SyntheticResident {
    let list = &residents
        .iter()
        .find(|(p, _)| p == prefix)
        .map(|(_, l)| l)
        .unwrap_or(&residents[0].1);
    &list[i % list.len()]
}

fn scenarios(
    residents: &[(String, Vec<SyntheticResident>)],
    marriage_certificate: Option<String>,
) -> Vec<Scenario> {
    let r44 = resident(residents, "44", 0);
    let r44m = resident(residents, "44", 1);
    let r11 = resident(residents, "11", 1);
    let r11b = resident(residents, "11", 2);
    let r31 = resident(residents, "31", 3);
    let r31b = resident(residents, "31", 5);
    let r44b = resident(residents, "44", 4);
    let applicant = |r: &SyntheticResident| json!({"id_number": r.id.as_str(), "name": r.name, "phone": "13800138000"});
    let mut bad_id = r44.id.as_str().to_owned();
    let last = if bad_id.ends_with('0') { '1' } else { '0' };
    bad_id.pop();
    bad_id.push(last);
    vec![
        Scenario {
            label: "Guangdong resident registers medical treatment in Shanghai",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "medical-treatment-registration",
                "applicant": applicant(r44),
                "form": {
                    "treatment_region": "310115", "hospital_name": "复旦大学附属中山医院",
                    "start_date": "2026-12-01", "reason": "异地长期居住", "contact_phone": "13800138000"
                },
            }),
            expect: Expect::Approved {
                handling_prefix: "44".into(),
            },
        },
        Scenario {
            label: "Beijing parents register a newborn while in Guangdong",
            origin: "44".into(),
            filing: json!({
                "one_thing_id": "newborn-birth",
                "applicant": applicant(r11),
                "form": {
                    "child_name": "王小明", "child_sex": "男", "child_birth_date": "2026-11-20",
                    "birth_place": "440305", "mother_id_number": r11.id.as_str(), "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "11".into(),
            },
        },
        Scenario {
            label: "Beijing resident starts a business in Shanghai Pudong",
            origin: "11".into(),
            filing: json!({
                "one_thing_id": "business-startup",
                "applicant": applicant(r11b),
                "form": {
                    "company_name": "上海通办示范科技有限公司", "company_type": "有限责任公司",
                    "business_region": "310115", "registered_capital": "100万元",
                    "legal_representative_name": r11b.name, "legal_representative_id": r11b.id.as_str(),
                    "business_scope": "软件开发；信息技术咨询服务", "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "31".into(),
            },
        },
        Scenario {
            label: "Shanghai resident moves household registration to Shenzhen",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "household-transfer",
                "mode": "proxy_acceptance",
                "applicant": applicant(r31),
                "form": {
                    "move_from_region": "310115", "move_to_region": "440305",
                    "move_to_address": "深圳市南山区科技园路1号", "reason": "夫妻投靠",
                    "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "44".into(),
            },
        },
        Scenario {
            label: "Shanghai resident moves household to Guangzhou, handled jointly (多地联办): \
                    the transfer out at Shanghai, then the transfer in at Guangdong",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "household-transfer",
                "mode": "joint",
                "applicant": applicant(r31b),
                "form": {
                    "move_from_region": "310115", "move_to_region": "440106",
                    "move_to_address": "广州市天河区天河路1号", "reason": "就业落户",
                    "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "44".into(),
            },
        },
        Scenario {
            label: "Guangdong resident transfers social insurance to Beijing",
            origin: "44".into(),
            filing: json!({
                "one_thing_id": "social-insurance-transfer",
                "applicant": applicant(r44b),
                "form": {
                    "transfer_from_region": "440305", "transfer_to_region": "110105",
                    "insurance_types": "基本养老保险", "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "11".into(),
            },
        },
        Scenario {
            label: "Guangdong resident moves household to Beijing on marriage, at a Shanghai window \
                    (licenses of Guangdong and Beijing; the former address filled in from the register)",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "household-transfer",
                "mode": "proxy_acceptance",
                "applicant": applicant(r44m),
                "form": {
                    "move_to_region": "110105", "move_to_address": "北京市朝阳区建国路1号",
                    "reason": "夫妻投靠", "contact_phone": "13800138000"
                },
                "materials": marriage_certificate.iter().map(|id| json!(
                    {"material_id": "marriage_certificate", "source": "license", "reference": id}
                )).collect::<Vec<_>>()
            }),
            expect: Expect::Approved {
                handling_prefix: "11".into(),
            },
        },
        Scenario {
            label: "The same applicant transfers social insurance to Beijing (served from the gateway's cache)",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "social-insurance-transfer",
                "applicant": applicant(r44m),
                "form": {
                    "transfer_to_region": "110105", "insurance_types": "基本养老保险",
                    "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Approved {
                handling_prefix: "11".into(),
            },
        },
        Scenario {
            label: "A mistyped ID number is refused at the window",
            origin: "31".into(),
            filing: json!({
                "one_thing_id": "medical-treatment-registration",
                "applicant": {"id_number": bad_id, "name": r44.name},
                "form": {
                    "treatment_region": "310115", "hospital_name": "复旦大学附属中山医院",
                    "start_date": "2026-12-01", "reason": "异地长期居住", "contact_phone": "13800138000"
                }
            }),
            expect: Expect::Refused {
                status: 422,
                field: "applicant.id_number",
            },
        },
        Scenario {
            label: "A form missing a required field is refused before it crosses",
            origin: "11".into(),
            filing: json!({
                "one_thing_id": "business-startup",
                "applicant": applicant(r11b),
                "form": { "business_region": "310115", "contact_phone": "13800138000" }
            }),
            expect: Expect::Refused {
                status: 422,
                field: "form.company_name",
            },
        },
        Scenario {
            label: "Shanghai resident files Shanghai's featured one-thing, adopted by Guangdong, at Guangdong's window",
            origin: "44".into(),
            filing: featured_filing(applicant(r31b)),
            expect: Expect::Approved {
                handling_prefix: "31".into(),
            },
        },
        Scenario {
            label: "Beijing has not adopted Shanghai's featured one-thing: refused at its window",
            origin: "11".into(),
            filing: featured_filing(applicant(r31)),
            expect: Expect::Refused {
                status: 422,
                field: "one_thing_id",
            },
        },
    ]
}

/// Shanghai's featured one-thing, published and adopted by [`publish_and_adopt`].
const FEATURED: &str = "sh-yangtze-medical-settlement";

fn featured_filing(applicant: Value) -> Value {
    json!({
        "one_thing_id": FEATURED,
        "applicant": applicant,
        "form": {
            "treatment_region": "310115", "hospital_name": "复旦大学附属中山医院",
            "start_date": "2026-12-01", "reason": "异地长期居住", "contact_phone": "13800138000"
        },
    })
}

/// 一地创新、全国复用: Shanghai publishes a featured one-thing through the gateway and
/// Guangdong adopts it, both with their nodes' operator listeners (as `tongban operator
/// publish-item` and `adopt-item` do). Prints what happened.
async fn publish_and_adopt(federation: &LocalFederation) {
    let steps = [
        (
            "31",
            "/catalog/featured",
            featured_medical_item(FEATURED, None),
        ),
        (
            "44",
            &*format!("/catalog/featured/{FEATURED}/adopt"),
            json!({}),
        ),
    ];
    for (prefix, path, body) in steps {
        let Ok(node) = federation.node(prefix) else {
            continue;
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        match node.operator.send("POST", path, body.into()).await {
            Ok(answer) if answer.status == 200 => println!(
                "- region {prefix}: POST {path} -> catalog {}",
                answer.body["version"].as_str().unwrap_or("?")
            ),
            Ok(answer) => println!(
                "- region {prefix}: POST {path} answered {}: {}",
                answer.status, answer.body
            ),
            Err(error) => println!("- region {prefix}: POST {path} failed: {error}"),
        }
    }
}

/// Runs the demo; returns whether every scenario ended as expected.
pub async fn run(
    dir: &Path,
    regions: &[String],
    http_platforms: &[String],
    once: bool,
    shutdown: ShutdownSignal,
) -> anyhow::Result<bool> {
    // Wiped only if an earlier demo made it (or it is empty): never a user's folder.
    tongban_runtime::process::workdir::prepare(dir, "tongban demo")?;
    let refs: Vec<&str> = regions.iter().map(String::as_str).collect();
    let mut spec = FederationSpec::new(dir, &refs)?;
    // Those regions' nodes reach a reference platform process (this very binary, as
    // `tongban platform serve`) over the HTTP contract.
    spec.http_platforms = http_platforms.to_vec();
    spec.platform_binary = Some(std::env::current_exe()?);
    println!("Starting a local federation in {} ...", dir.display());
    let federation = LocalFederation::start(spec).await?;
    let console = console_proxy(&federation, &shutdown).await?;
    print_endpoints(&federation, console);

    let table = RegionTable::embedded();
    let residents: Vec<(String, Vec<SyntheticResident>)> = federation
        .nodes
        .keys()
        .filter_map(|p| {
            let prefix = RegionPrefix::parse(p).ok()?;
            Some((
                p.clone(),
                synthetic_residents(table, &prefix, federation.spec().seed_residents),
            ))
        })
        .collect();
    let marriage_certificate = marriage_certificate_from_beijing(&federation, &residents).await;
    publish_and_adopt(&federation).await;
    let mut outcomes = Vec::new();
    for scenario in scenarios(&residents, marriage_certificate) {
        let Ok(node) = federation.node(&scenario.origin) else {
            println!(
                "skipping {:?}: no node for region {}",
                scenario.label, scenario.origin
            );
            continue;
        };
        println!("- {}", scenario.label);
        outcomes.push(play(&federation, node, &scenario).await);
    }
    print_table(&outcomes);
    println!(
        "\nrecognized: materials satisfied by electronic licenses (count, issuing regions); \
         cached: lookups the gateway answered from its cache."
    );
    if outcomes
        .iter()
        .any(|o| !o.case_number.is_empty() && o.promised.is_empty())
    {
        println!(
            "promised -: the handling region's official calendar has no State Council \
             schedule yet for a year the time limit reaches; add it to the nodes' \
             [calendar] folder and the date is promised (README, \"File an application\")."
        );
    }
    let ok = outcomes.iter().all(|o| o.ok) && !outcomes.is_empty();
    println!(
        "\n{} of {} scenarios ended as expected.",
        outcomes.iter().filter(|o| o.ok).count(),
        outcomes.len()
    );
    if !once {
        println!("\nThe federation keeps running; press Ctrl-C to stop.");
        shutdown.wait().await;
    }
    println!("Shutting down ...");
    federation.shutdown().await;
    Ok(ok)
}

async fn play(_federation: &LocalFederation, node: &RunningNode, scenario: &Scenario) -> Outcome {
    let started = Instant::now();
    let one_thing = scenario.filing["one_thing_id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let mut outcome = Outcome {
        origin: node.region.to_string(),
        target: String::new(),
        one_thing,
        case_number: String::new(),
        promised: String::new(),
        status: String::new(),
        filed_ms: 0.0,
        done_ms: None,
        recognized: String::new(),
        cached: 0,
        ok: false,
    };
    let response = node.portal.file(&scenario.filing).await;
    outcome.filed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            outcome.status = format!("error: {e}");
            return outcome;
        }
    };
    match &scenario.expect {
        Expect::Refused { status, field } => {
            let named = response.body["error"]["fields"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x["field"] == *field));
            outcome.status = format!(
                "refused {} ({})",
                response.status,
                field_list(&response.body)
            );
            outcome.ok = response.status == *status && named;
            outcome
        }
        Expect::Approved { handling_prefix } => {
            if response.status != 201 {
                outcome.status = format!(
                    "HTTP {}: {}",
                    response.status, response.body["error"]["message"]
                );
                return outcome;
            }
            let receipt = &response.body;
            let recognized = receipt["materials_recognized"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut regions: Vec<String> = recognized
                .iter()
                .filter_map(|m| m["issuing_region"].as_str())
                .map(|r| r.get(..2).unwrap_or(r).to_owned())
                .collect();
            regions.sort();
            regions.dedup();
            outcome.recognized = format!("{} ({})", recognized.len(), regions.join(","));
            outcome.cached = recognized.iter().filter(|m| m["source"] == "cache").count()
                + usize::from(receipt["identity"]["source"] == "cache");
            outcome.target = receipt["handling_region"].as_str().unwrap_or("").to_owned();
            outcome.case_number = receipt["case_number"].as_str().unwrap_or("").to_owned();
            outcome.promised = receipt["promised_date"].as_str().unwrap_or("").to_owned();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match node.portal.status(&outcome.case_number).await {
                    Ok(s) if s.status == 200 => {
                        let stage = s.body["stage"].as_str().unwrap_or("").to_owned();
                        outcome.status =
                            format!("{stage} ({})", s.body["source"].as_str().unwrap_or(""));
                        if matches!(stage.as_str(), "approved" | "rejected" | "withdrawn") {
                            outcome.done_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                            outcome.ok = stage == "approved"
                                && outcome.target.starts_with(handling_prefix.as_str());
                            return outcome;
                        }
                    }
                    Ok(s) => outcome.status = format!("status HTTP {}", s.status),
                    Err(e) => outcome.status = format!("status error: {e}"),
                }
                if Instant::now() > deadline {
                    outcome.status.push_str(" — timed out");
                    return outcome;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The marriage certificate Beijing's register issued to a Guangdong resident (the
/// second synthetic resident of 44): a license of a third region for the demo to cite.
async fn marriage_certificate_from_beijing(
    federation: &LocalFederation,
    residents: &[(String, Vec<SyntheticResident>)],
) -> Option<String> {
    let beijing = federation.node("11").ok()?;
    let holder = residents.iter().find(|(p, _)| p == "44")?.1.get(1)?;
    // The register's key: the node's own, or its province platform's.
    let key = match federation.platforms.get("11") {
        Some(platform) => platform.id_hash_key().ok()?,
        None => beijing.store.id_hash_key().await.ok()?,
    };
    let licenses = beijing
        .platform
        .licenses_of_resident(&holder.id, &key)
        .await
        .ok()?;
    licenses
        .into_iter()
        .find(|l| l.license_type == "marriage_certificate")
        .map(|l| l.license_id)
}

fn field_list(body: &Value) -> String {
    body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["field"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The console as an operator opens it: a loopback proxy (what `tongban operator proxy`
/// serves) presenting the demo viewer's certificate to the first gateway's operator
/// listener. Served until `shutdown`.
async fn console_proxy(
    f: &LocalFederation,
    shutdown: &ShutdownSignal,
) -> anyhow::Result<std::net::SocketAddr> {
    let gateway = f
        .gateways
        .first()
        .ok_or_else(|| anyhow::anyhow!("the federation has no gateway"))?;
    let viewer = gateway.operator.as_operator(
        tongban_runtime::trust::identity::PeerIdentity::Gateway,
        &f.dir.join("pki"),
        tongban_kit::config::pki::VIEWER,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(tongban_runtime::trust::operator_client::proxy(
        listener,
        viewer.client().clone(),
        shutdown.clone(),
    ));
    Ok(addr)
}

fn print_endpoints(f: &LocalFederation, console: std::net::SocketAddr) {
    println!("\nEndpoints (loopback):");
    for gateway in &f.gateways {
        println!(
            "  gateway   grpcs://{}   admin http://{}/readyz   config {}",
            gateway.federation_addr,
            gateway
                .admin_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            gateway.config_path.display()
        );
        println!(
            "  operator  https://{} (an operator certificate required)",
            gateway.operator_addr
        );
    }
    let pki = f.dir.join("pki");
    println!(
        "  console   http://{console}/console (a proxy with the viewer's certificate, as \
         `tongban operator proxy --member {} --cert {} --key {}` serves it)",
        f.gateways
            .first()
            .map(|g| g.config_path.display().to_string())
            .unwrap_or_default(),
        pki.join("operator-viewer.pem").display(),
        pki.join("operator-viewer.key").display()
    );
    for node in f.nodes.values() {
        println!(
            "  node {}  grpcs://{}   portal {}/v1/applications   config {}",
            node.region,
            node.federation_addr,
            node.portal.base(),
            node.config_path.display()
        );
    }
    for platform in f.platforms.values() {
        println!(
            "  platform {}  {} (reference platform, pid {}, HTTP contract with mutual TLS \
             and HMAC)   clerk's API {}/clerk/v1/cases   config {}",
            platform.prefix,
            platform.url(),
            platform
                .pid()
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            platform.clerk.base(),
            platform.files.config_path.display()
        );
    }
    println!("  CA        {}\n", f.ca_pem.display());
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "\n{:<3} {:<7} {:<7} {:<31} {:<25} {:<11} {:<12} {:>6} {:>8} {:>8}  final status",
        "#",
        "origin",
        "target",
        "one-thing",
        "case number",
        "promised",
        "recognized",
        "cached",
        "file ms",
        "done ms"
    );
    println!("{}", "-".repeat(150));
    for (i, o) in outcomes.iter().enumerate() {
        println!(
            "{:<3} {:<7} {:<7} {:<31} {:<25} {:<11} {:<12} {:>6} {:>8.1} {:>8}  {}{}",
            i + 1,
            o.origin,
            if o.target.is_empty() { "-" } else { &o.target },
            o.one_thing,
            if o.case_number.is_empty() {
                "-"
            } else {
                &o.case_number
            },
            if o.promised.is_empty() {
                "-"
            } else {
                &o.promised
            },
            if o.recognized.is_empty() {
                "-"
            } else {
                &o.recognized
            },
            o.cached,
            o.filed_ms,
            o.done_ms
                .map(|d| format!("{d:.0}"))
                .unwrap_or_else(|| "-".into()),
            o.status,
            if o.ok { "" } else { "   <-- unexpected" }
        );
    }
}

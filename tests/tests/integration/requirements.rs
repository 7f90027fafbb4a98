//! One notice of requirements (一次告知) at a real node's portal: for every one-thing of
//! the catalog, everything it requires, checked against the catalog itself; for an
//! identified applicant, the materials their home region already holds, asked through
//! the gateway (and only for a person whose identity holds); bad requests named.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tongban_kit::testing::start;
use tongban_proto::rules::{
    calendar::{business_now, working_days::Calendar},
    catalog::{Catalog, CompetentRegion, MaterialKind},
};

fn path(id: &str) -> String {
    format!("/v1/one-things/{id}/requirements")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_thing_has_one_notice_and_an_identified_applicant_learns_what_is_held() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    let catalog = Catalog::embedded();
    let calendar = Calendar::built_in().unwrap();
    let today = business_now().date();

    for item in &catalog.items {
        let answer = n31.portal.get(&path(&item.id)).await.unwrap();
        assert_eq!(answer.status, 200, "{}: {}", item.id, answer.body);
        let notice = &answer.body;
        assert_eq!(notice["name"], item.name.as_str());
        assert_eq!(notice["catalog_version"], catalog.version.as_str());
        assert_eq!(
            notice["handling"]["time_limit_working_days"],
            item.time_limit_working_days
        );
        let materials = notice["materials"].as_array().unwrap();
        assert_eq!(materials.len(), item.materials.len(), "{}", item.id);
        for (shown, m) in materials.iter().zip(&item.materials) {
            assert_eq!(shown["id"], m.id.as_str());
            assert_eq!(shown["required"], m.required);
            let license = m.kind == MaterialKind::License;
            assert_eq!(shown["kind"], if license { "license" } else { "upload" });
            if license {
                let types = shown["accepted_license_types"].as_array().unwrap();
                assert!(!types.is_empty(), "{}: {shown}", item.id);
            }
        }
        let form = notice["form"].as_array().unwrap();
        assert_eq!(form.len(), item.form.len(), "{}", item.id);
        for (shown, f) in form.iter().zip(&item.form) {
            assert_eq!(shown["name"], f.name.as_str());
            assert_eq!(shown["required"], f.required);
            let rule = shown["rule"].as_str().unwrap();
            assert!(
                rule.starts_with(if f.required { "必填" } else { "选填" }),
                "{rule}"
            );
        }
        // A joint item names its parts in order, each with who handles it.
        let parts = notice["joint_parts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(parts.len(), item.parts.len(), "{}: {notice}", item.id);
        for (shown, p) in parts.iter().zip(&item.parts) {
            assert_eq!(shown["id"], p.id.as_str());
            assert_eq!(shown["name"], p.name.as_str());
            assert_eq!(shown["after"].as_array().map_or(0, Vec::len), p.after.len());
            if let CompetentRegion::FormField { field } = &p.competent_region {
                assert!(
                    shown["handled_by"]
                        .as_str()
                        .unwrap()
                        .contains(field.as_str())
                );
            }
        }
        // The filing region handles it: the promise is known before filing.
        if item.competent_region == CompetentRegion::FilingRegion {
            assert_eq!(notice["handling"]["region"], "310000");
            let expected = calendar
                .for_region("310000")
                .add_working_days(today, item.time_limit_working_days)
                .ok()
                .map(|d| d.to_string());
            assert_eq!(
                notice["handling"]["promised_if_filed_today"].as_str(),
                expected.as_deref(),
                "{}",
                item.id
            );
        }
        assert!(notice.get("applicant").is_none());
    }

    // A region asked about: the promise in that region's calendar.
    let medical = "medical-treatment-registration";
    let answer = n31
        .portal
        .get(&format!("{}?region=440100", path(medical)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["handling"]["region"], "440100");

    // An identified applicant of 44: their home region's licenses stand in for the
    // license materials (nothing to bring), asked through the gateway.
    let resident = &t.residents("44")[0];
    let asked = json!({"applicant": {"id_number": resident.id.as_str(), "name": resident.name}});
    let answer = n31.portal.post_json(&path(medical), &asked).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let applicant = &answer.body["applicant"];
    assert_eq!(applicant["identity"], "recognized", "{applicant}");
    assert_eq!(applicant["complete"], true, "{applicant}");
    let available: Vec<&str> = applicant["available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["material_id"].as_str().unwrap())
        .collect();
    let item = catalog.item(medical).unwrap();
    for m in item
        .materials
        .iter()
        .filter(|m| m.kind == MaterialKind::License && m.required)
    {
        assert!(
            available.contains(&m.id.as_str()),
            "{} not available: {applicant}",
            m.id
        );
    }
    for id in applicant["still_needed"].as_array().unwrap() {
        assert!(!available.contains(&id.as_str().unwrap()), "{applicant}");
    }
    // The handling region is the applicant's home, so the promise is known.
    assert!(
        answer.body["handling"]["region"]
            .as_str()
            .unwrap()
            .starts_with("44")
    );

    // A wrong name: nothing about the person is told.
    let wrong = json!({"applicant": {"id_number": resident.id.as_str(), "name": "不是本人"}});
    let answer = n31.portal.post_json(&path(medical), &wrong).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let applicant = &answer.body["applicant"];
    assert_ne!(applicant["identity"], "recognized", "{applicant}");
    assert_eq!(applicant["available"], json!([]), "{applicant}");

    // Bad requests, each named and never quoting what was sent.
    let unknown = n31.portal.get(&path("110105194912310021")).await.unwrap();
    assert_eq!(unknown.status, 404);
    assert!(!unknown.body.to_string().contains("110105194912310021"));
    let region = n31
        .portal
        .get(&format!("{}?region=999999", path(medical)))
        .await
        .unwrap();
    assert_eq!(region.status, 422);
    assert_eq!(region.body["error"]["fields"][0]["field"], "region");
    let bad = json!({"applicant": {"id_number": "110105194912310020", "name": "张三\u{202E}"}});
    let answer = n31.portal.post_json(&path(medical), &bad).await.unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    let fields: Vec<&Value> = answer.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["field"])
        .collect();
    assert_eq!(
        fields,
        [&json!("applicant.id_number"), &json!("applicant.name")]
    );
    assert!(!answer.body.to_string().contains("110105194912310020"));
    t.shutdown().await;
}

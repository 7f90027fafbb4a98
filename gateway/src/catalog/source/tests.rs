use tongban_proto::rules::{
    catalog::{Catalog, CatalogItem},
    region::{RegionCode, RegionPrefix},
};

use super::*;

fn prefix(p: &str) -> RegionPrefix {
    RegionPrefix::parse(p).unwrap()
}

/// Guangdong's featured item, shaped like Shanghai's.
fn guangdong_item() -> CatalogItem {
    let mut item = Catalog::embedded()
        .item("sh-foreigner-work")
        .unwrap()
        .clone();
    item.id = "gd-talent-settle".into();
    item.publishing_region = None;
    item
}

#[tokio::test]
async fn changes_are_recorded_served_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog-ledger.jsonl");
    let base = Catalog::embedded();
    let source = CatalogSource::with_ledger(base.clone(), &path).unwrap();
    assert_eq!(source.current().version, base.version);

    let published = source
        .publish(&prefix("44"), guangdong_item())
        .await
        .unwrap();
    assert_eq!(published.version, format!("{}-L1", base.version));
    assert!(published.recorded);
    // The same publication again records nothing.
    let again = source
        .publish(&prefix("44"), guangdong_item())
        .await
        .unwrap();
    assert_eq!(
        again,
        Changed {
            version: published.version.clone(),
            recorded: false
        }
    );
    let adopted = source
        .adopt(&prefix("31"), "gd-talent-settle")
        .await
        .unwrap();
    assert_eq!(adopted.version, format!("{}-L2", base.version));
    // Refusals record nothing either.
    let theirs = source
        .adopt(&prefix("31"), "newborn-birth")
        .await
        .unwrap_err();
    assert!(
        theirs.to_string().contains("is not a featured item"),
        "{theirs}"
    );
    let served = source.served();
    assert_eq!(served.response.version, adopted.version);
    let item = served.catalog.item("gd-talent-settle").unwrap();
    assert!(item.offered_in(&RegionCode::parse("310000").unwrap()));

    // Every earlier version is rebuilt exactly, for nodes that never fetched it.
    let first = source.version(&published.version).unwrap();
    let item = first
        .items
        .iter()
        .find(|i| i.id == "gd-talent-settle")
        .unwrap();
    assert!(
        item.adoptions.is_empty(),
        "as published, before the adoption"
    );
    assert_eq!(source.version(&base.version).unwrap(), base.to_proto());
    assert_eq!(source.version(&adopted.version).unwrap(), *served.response);
    for unknown in [
        format!("{}-L3", base.version),
        format!("{}-L01", base.version),
        "x".into(),
    ] {
        assert!(source.version(&unknown).is_none(), "{unknown}");
    }
    drop(source);

    let restarted = CatalogSource::with_ledger(base.clone(), &path).unwrap();
    assert_eq!(*restarted.current(), *served.catalog);
    assert_eq!(restarted.version(&published.version).unwrap(), first);
    let next = restarted
        .adopt(&prefix("11"), "gd-talent-settle")
        .await
        .unwrap();
    assert_eq!(next.version, format!("{}-L3", base.version));

    // A new release whose catalog took the id skips that publication (and the adoptions
    // of it), keeping the sequence.
    let mut newer = base.clone();
    newer.version = "2027.01-1".into();
    let mut national = guangdong_item();
    national.list = tongban_proto::rules::catalog::CatalogList::National;
    national.time_limit_working_days = 3;
    newer.items.push(national);
    let upgraded = CatalogSource::with_ledger(newer, &path).unwrap();
    let current = upgraded.current();
    assert_eq!(current.version, "2027.01-1-L3");
    assert_eq!(
        current
            .item("gd-talent-settle")
            .unwrap()
            .time_limit_working_days,
        3
    );
}

#[tokio::test]
async fn without_a_ledger_nothing_is_published() {
    let source = CatalogSource::fixed(Catalog::embedded());
    let error = source
        .publish(&prefix("44"), guangdong_item())
        .await
        .unwrap_err();
    assert!(matches!(error, CatalogChangeError::NoLedger), "{error}");
}

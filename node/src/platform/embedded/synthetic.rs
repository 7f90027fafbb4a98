//! Deterministic synthetic residents for demos, tests and seeding: numbers that belong
//! to no real person.

use tongban_proto::{
    rules::region::{Level, RegionPrefix, RegionTable},
    rules::resident_id::{ResidentId, check_character},
};

/// A synthetic resident for demos and tests.
#[derive(Clone, Debug)]
pub struct SyntheticResident {
    pub id: ResidentId,
    pub name: String,
}

/// Deterministic synthetic residents of the region `prefix`: real county codes of the
/// region from the GB/T 2260 table, birth dates spread over 1950–2005, and sequence
/// numbers 900–999, which the project reserves for synthetic numbers (they belong to no
/// real person).
pub fn synthetic_residents(
    table: &RegionTable,
    prefix: &RegionPrefix,
    count: u32,
) -> Vec<SyntheticResident> {
    const SURNAMES: [&str; 12] = [
        "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
    ];
    const GIVEN: [&str; 12] = [
        "伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰",
    ];
    let mut counties: Vec<_> = table
        .iter()
        .filter(|d| {
            matches!(d.level, Level::County | Level::Prefecture)
                && d.code.as_str().starts_with(prefix.as_str())
        })
        .map(|d| d.code)
        .collect();
    if counties.is_empty() {
        counties.push(tongban_proto::rules::region::RegionCode::from_prefix(
            prefix,
        ));
    }
    let today = tongban_proto::rules::calendar::business_now().date();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let code = &counties[(i as usize * 7) % counties.len()];
        let year = 1950 + (i * 13) % 56;
        let month = 1 + (i * 5) % 12;
        let day = 1 + (i * 11) % 28;
        let seq = 900 + (i % 100);
        let first17 = format!("{}{year:04}{month:02}{day:02}{seq:03}", code.as_str());
        let Ok(digits) = <[u8; 17]>::try_from(first17.as_bytes()) else {
            continue;
        };
        let number = format!("{first17}{}", check_character(&digits));
        if let Ok(id) = ResidentId::parse(&number, table, today) {
            let name = format!(
                "{}{}",
                SURNAMES[(i as usize) % SURNAMES.len()],
                GIVEN[(i as usize * 5 + 3) % GIVEN.len()]
            );
            out.push(SyntheticResident { id, name });
        }
    }
    out
}

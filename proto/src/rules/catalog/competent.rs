//! The competent-region rule: which region handles an application's case.

use std::collections::BTreeMap;

use super::fields::REGION_CODE_SHAPE;
use super::model::{CatalogItem, CompetentRegion, JointPart};
use super::prereview::FieldError;
use crate::rules::region::RegionCode;

impl CatalogItem {
    /// The region competent for an application: the applicant's home region, the region
    /// named by the item's competent-region form field, or the filing region. A missing
    /// or malformed competent-region field is an error naming that field; whether the
    /// code exists is [`validate_form`](Self::validate_form)'s job.
    pub fn competent_region(
        &self,
        applicant_home: &RegionCode,
        form: &BTreeMap<String, String>,
        filing_region: &RegionCode,
    ) -> Result<RegionCode, FieldError> {
        by_rule(&self.competent_region, applicant_home, form, filing_region)
    }
}

impl JointPart {
    /// The region competent for this part of a joint application, by the part's own
    /// rule (as [`CatalogItem::competent_region`] does for the whole item).
    pub fn competent_region(
        &self,
        applicant_home: &RegionCode,
        form: &BTreeMap<String, String>,
        filing_region: &RegionCode,
    ) -> Result<RegionCode, FieldError> {
        by_rule(&self.competent_region, applicant_home, form, filing_region)
    }
}

fn by_rule(
    rule: &CompetentRegion,
    applicant_home: &RegionCode,
    form: &BTreeMap<String, String>,
    filing_region: &RegionCode,
) -> Result<RegionCode, FieldError> {
    match rule {
        CompetentRegion::ApplicantHome => Ok(*applicant_home),
        CompetentRegion::FilingRegion => Ok(*filing_region),
        CompetentRegion::FormField { field } => match form.get(field) {
            Some(value) if !value.trim().is_empty() => {
                RegionCode::parse(value).map_err(|_| FieldError::new(field, REGION_CODE_SHAPE))
            }
            _ => Err(FieldError::new(
                field,
                "required field is missing; it names the competent region",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::catalog::test_support::{code, form, item, newborn_form};

    #[test]
    fn competent_region_for_each_rule() {
        let home = code("110105");
        let filing = code("310115");
        let newborn = item("newborn-birth");
        assert_eq!(
            newborn.competent_region(&home, &newborn_form(), &filing),
            Ok(home)
        );
        let featured = item("sh-foreigner-work");
        assert_eq!(
            featured.competent_region(&home, &form(&[]), &filing),
            Ok(filing)
        );

        let transfer = item("household-transfer");
        let f = form(&[("move_from_region", "110105"), ("move_to_region", "440305")]);
        assert_eq!(
            transfer.competent_region(&home, &f, &filing),
            Ok(code("440305"))
        );
        let missing = transfer
            .competent_region(&home, &form(&[("move_to_region", " ")]), &filing)
            .unwrap_err();
        assert_eq!(missing.field, "move_to_region");
        assert!(
            missing
                .to_string()
                .starts_with("form.move_to_region: required field is missing")
        );
        let malformed = transfer
            .competent_region(&home, &form(&[("move_to_region", "44a305")]), &filing)
            .unwrap_err();
        assert_eq!(
            malformed.to_string(),
            "form.move_to_region: expected a 6-digit GB/T 2260 region code"
        );
    }
}

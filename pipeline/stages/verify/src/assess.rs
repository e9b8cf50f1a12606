//! The verification decision, given the registries' answers: pure, so every rule is
//! unit-tested without a registry.

use motcua_registries::{Business, BusinessStatus, Citizen, Parcel};
use motcua_schemas::{
    ApplicantKind, CheckOutcome, Dossier, DossierAccepted, LandParcel, Reason, Registry, RegistryCheck,
};

use crate::normalize::names_match;

/// What the registries said about one dossier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    /// The applicant (or a business applicant's legal representative), if the population
    /// check applies: (citizen ID asked, answer).
    pub citizen: Option<(String, Option<Citizen>)>,
    pub parcels: Vec<(LandParcel, Option<Parcel>)>,
    pub businesses: Vec<(String, Option<Business>)>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Everything matches; the dossier carries what the registries filled in.
    Verified {
        dossier: Box<Dossier>,
        checks: Vec<RegistryCheck>,
    },
    /// Something does not match: the applicant must correct or add papers.
    Supplement {
        reasons: Vec<Reason>,
        checks: Vec<RegistryCheck>,
    },
}

pub(crate) fn check(registry: Registry, subject: &str, outcome: CheckOutcome, detail: Option<String>) -> RegistryCheck {
    RegistryCheck {
        registry,
        subject: subject.to_owned(),
        outcome,
        detail,
    }
}

fn reason(code: &str, message: String) -> Reason {
    Reason {
        code: code.to_owned(),
        message,
    }
}

/// Which lookups a dossier needs: (citizen ID, parcels, tax codes).
/// How a parcel is named in a check.
pub(crate) fn parcel_subject(p: &LandParcel) -> String {
    format!("{}/{}/{}", p.unit_code, p.map_sheet, p.parcel_number)
}

pub fn needed(accepted: &DossierAccepted, registries: &[Registry]) -> (Option<String>, Vec<LandParcel>, Vec<String>) {
    let d = &accepted.dossier;
    let citizen = registries
        .contains(&Registry::Population)
        .then(|| d.applicant.citizen_id.clone())
        .flatten();
    let parcels = if registries.contains(&Registry::Land) {
        d.land_parcels.clone()
    } else {
        Vec::new()
    };
    let mut taxes = Vec::new();
    if registries.contains(&Registry::Business) {
        if let (ApplicantKind::Business, Some(t)) = (d.applicant.kind, &d.applicant.tax_code) {
            taxes.push(t.clone());
        }
        for t in &d.enterprise_tax_codes {
            if !taxes.contains(t) {
                taxes.push(t.clone());
            }
        }
    }
    (citizen, parcels, taxes)
}

pub fn assess(accepted: &DossierAccepted, answers: &Answers) -> Verdict {
    let mut dossier = accepted.dossier.clone();
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    let applicant_kind = dossier.applicant.kind;

    if let Some((id, answer)) = &answers.citizen {
        match answer {
            None => {
                checks.push(check(Registry::Population, id, CheckOutcome::NotFound, None));
                reasons.push(reason(
                    "CITIZEN_NOT_FOUND",
                    "Số định danh cá nhân của người nộp không có trong Cơ sở dữ liệu quốc gia về dân cư".to_owned(),
                ));
            }
            Some(c) if c.deceased => {
                checks.push(check(
                    Registry::Population,
                    id,
                    CheckOutcome::Mismatch,
                    Some("deceased".into()),
                ));
                // What the registry says of the person stays in the audit log: the reason
                // only says that the record cannot be used, not why.
                reasons.push(reason(
                    "CITIZEN_RECORD_UNUSABLE",
                    "Thông tin công dân của người nộp chưa xác thực được với Cơ sở dữ liệu quốc gia về dân cư; \
                     đề nghị liên hệ bộ phận một cửa"
                        .to_owned(),
                ));
            }
            Some(c) => {
                let mut mismatches = Vec::new();
                let mut filled = Vec::new();
                // A business applicant's name is the business's; the person checked is the
                // legal representative, whose name the form does not carry.
                if applicant_kind == ApplicantKind::Citizen && !names_match(&dossier.applicant.full_name, &c.full_name)
                {
                    mismatches.push("full_name");
                    reasons.push(reason(
                        "NAME_MISMATCH",
                        "Họ tên khai trong hồ sơ không khớp với Cơ sở dữ liệu quốc gia về dân cư".to_owned(),
                    ));
                }
                match dossier.applicant.date_of_birth {
                    Some(dob) if dob != c.date_of_birth && applicant_kind == ApplicantKind::Citizen => {
                        mismatches.push("date_of_birth");
                        reasons.push(reason(
                            "BIRTH_DATE_MISMATCH",
                            "Ngày sinh khai khác với CSDL dân cư".to_owned(),
                        ));
                    }
                    None if applicant_kind == ApplicantKind::Citizen => {
                        dossier.applicant.date_of_birth = Some(c.date_of_birth);
                        filled.push("date_of_birth");
                    }
                    _ => {}
                }
                if dossier.applicant.residence_unit_code.is_none() && applicant_kind == ApplicantKind::Citizen {
                    dossier.applicant.residence_unit_code = Some(c.residence_unit_code.clone());
                    filled.push("residence_unit_code");
                }
                let (outcome, detail) = if !mismatches.is_empty() {
                    (CheckOutcome::Mismatch, Some(mismatches.join(",")))
                } else if !filled.is_empty() {
                    (CheckOutcome::Filled, Some(filled.join(",")))
                } else {
                    (CheckOutcome::Matched, None)
                };
                checks.push(check(Registry::Population, id, outcome, detail));
            }
        }
    }

    // Parcels and tax codes are named by their place in the form, not by value.
    for (n, (asked, answer)) in (1..).zip(&answers.parcels) {
        let subject = parcel_subject(asked);
        match answer {
            None => {
                checks.push(check(Registry::Land, &subject, CheckOutcome::NotFound, None));
                reasons.push(reason(
                    "PARCEL_NOT_FOUND",
                    format!("Thửa đất thứ {n} khai trong hồ sơ không có trong CSDL đất đai"),
                ));
            }
            Some(p) if p.encumbrances.iter().any(|e| e == "DISPUTE") => {
                checks.push(check(
                    Registry::Land,
                    &subject,
                    CheckOutcome::Mismatch,
                    Some("DISPUTE".into()),
                ));
                reasons.push(reason(
                    "PARCEL_IN_DISPUTE",
                    format!("Thửa đất thứ {n} khai trong hồ sơ đang có tranh chấp theo CSDL đất đai"),
                ));
            }
            Some(p) => {
                let detail = (!p.encumbrances.is_empty()).then(|| p.encumbrances.join(","));
                checks.push(check(Registry::Land, &subject, CheckOutcome::Matched, detail));
            }
        }
    }

    for (n, (tax, answer)) in (1..).zip(&answers.businesses) {
        match answer {
            None => {
                checks.push(check(Registry::Business, tax, CheckOutcome::NotFound, None));
                reasons.push(reason(
                    "BUSINESS_NOT_FOUND",
                    format!("Mã số thuế thứ {n} khai trong hồ sơ không có trong CSDL đăng ký doanh nghiệp"),
                ));
            }
            Some(b) if b.status != BusinessStatus::Active => {
                checks.push(check(
                    Registry::Business,
                    tax,
                    CheckOutcome::Mismatch,
                    Some(b.status.as_str().into()),
                ));
                reasons.push(reason(
                    "BUSINESS_NOT_ACTIVE",
                    format!("Doanh nghiệp có mã số thuế thứ {n} khai trong hồ sơ không ở trạng thái đang hoạt động"),
                ));
            }
            Some(b) => {
                let is_applicant = applicant_kind == ApplicantKind::Business
                    && dossier.applicant.tax_code.as_deref() == Some(tax.as_str());
                let rep_ok = !is_applicant
                    || dossier
                        .applicant
                        .citizen_id
                        .as_deref()
                        .is_none_or(|id| id == b.legal_representative_citizen_id);
                if !rep_ok {
                    checks.push(check(
                        Registry::Business,
                        tax,
                        CheckOutcome::Mismatch,
                        Some("legal_representative".into()),
                    ));
                    reasons.push(reason(
                        "LEGAL_REPRESENTATIVE_MISMATCH",
                        format!(
                            "Người nộp không phải người đại diện theo pháp luật của doanh nghiệp thứ {n} khai trong hồ sơ"
                        ),
                    ));
                } else if is_applicant && dossier.applicant.residence_unit_code.is_none() {
                    dossier.applicant.residence_unit_code = Some(b.head_office_unit_code.clone());
                    checks.push(check(
                        Registry::Business,
                        tax,
                        CheckOutcome::Filled,
                        Some("residence_unit_code".into()),
                    ));
                } else {
                    checks.push(check(Registry::Business, tax, CheckOutcome::Matched, None));
                }
            }
        }
    }

    if reasons.is_empty() {
        Verdict::Verified {
            dossier: Box::new(dossier),
            checks,
        }
    } else {
        Verdict::Supplement { reasons, checks }
    }
}

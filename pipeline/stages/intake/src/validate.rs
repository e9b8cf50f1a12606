//! Pure validation of a submission: no I/O, every reason found (not just the first).

use motcua_reference::{civil, Procedure, Reference, Unit};
use motcua_schemas::{
    ApplicantKind, CompetentLevel, DossierStatus, DossierSubmitted, ProcedureField, ProcedureSummary, Reason,
};

use crate::ids::{self, CitizenIdProblem};

/// A submission that may be received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Agency code of the receiving center, first part of the dossier code.
    pub agency_code: String,
    pub procedure: ProcedureSummary,
}

/// A submission that may not be received, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `RejectedAtReception` when the submission cannot be fixed by adding papers,
    /// `SupplementRequested` when it can.
    pub status: DossierStatus,
    pub reasons: Vec<Reason>,
}

#[derive(Default)]
struct Findings {
    reject: Vec<Reason>,
    supplement: Vec<Reason>,
}

impl Findings {
    fn reject(&mut self, code: &str, message: String) {
        self.reject.push(Reason {
            code: code.to_owned(),
            message,
        });
    }
    fn supplement(&mut self, code: &str, message: String) {
        self.supplement.push(Reason {
            code: code.to_owned(),
            message,
        });
    }
}

/// A receiving center: a commune-level unit, or a provincial public service center
/// (`P` + 2-digit province code).
enum Center<'a> {
    Commune(&'a Unit),
    Provincial { province: String },
}

impl Center<'_> {
    fn province(&self, r: &Reference) -> String {
        match self {
            Center::Commune(u) => r.units.province_of(u).code.clone(),
            Center::Provincial { province } => province.clone(),
        }
    }
}

fn center<'a>(r: &'a Reference, code: &str) -> Option<Center<'a>> {
    if let Some(p) = code.strip_prefix('P') {
        return r.units.province(p).map(|p| Center::Provincial {
            province: p.code.clone(),
        });
    }
    if code.len() != 5 {
        return None;
    }
    r.units.unit(code).map(Center::Commune)
}

/// Agency code of a receiving center: `H<province>.<unit>` for commune-level centers,
/// `H<province>.TTHC` for the provincial public service center.
fn agency_code(r: &Reference, c: &Center<'_>) -> String {
    match c {
        Center::Commune(u) => format!("H{}.{}", r.units.province_of(u).code, u.code),
        Center::Provincial { province } => format!("H{province}.TTHC"),
    }
}

/// The earliest plausible submission time (2020-01-01) and the tolerated clock skew.
const EARLIEST_SUBMISSION_MS: i64 = 1_577_836_800_000;
const MAX_CLOCK_SKEW_MS: i64 = 24 * 3_600_000;

pub fn validate(r: &Reference, s: &DossierSubmitted) -> Result<Admission, Refusal> {
    let d = &s.dossier;
    let mut f = Findings::default();

    if d.submitted_at < EARLIEST_SUBMISSION_MS || d.submitted_at > s.published_at + MAX_CLOCK_SKEW_MS {
        f.reject(
            "INVALID_SUBMITTED_AT",
            format!("Thời điểm nộp hồ sơ không hợp lệ ({} ms)", d.submitted_at),
        );
    }

    let procedure: Option<&Procedure> = match r.catalog.get(&d.procedure_code) {
        None => {
            f.reject(
                "UNKNOWN_PROCEDURE",
                format!("Thủ tục {} không có trong danh mục", d.procedure_code),
            );
            None
        }
        Some(p) if !p.active => {
            f.reject(
                "PROCEDURE_INACTIVE",
                format!("Thủ tục {} ({}) đã bị bãi bỏ", p.code, p.name),
            );
            None
        }
        Some(p) => Some(p),
    };

    let receiving = center(r, &d.receiving_unit_code);
    if receiving.is_none() {
        f.reject(
            "UNKNOWN_RECEIVING_UNIT",
            format!(
                "Nơi tiếp nhận {} không phải đơn vị hành chính 2025 hay trung tâm cấp tỉnh",
                d.receiving_unit_code
            ),
        );
    }

    check_applicant(r, s, &mut f);

    let mut parcel_units = Vec::new();
    for p in &d.land_parcels {
        match r.units.unit(&p.unit_code) {
            Some(u) => parcel_units.push(u),
            None => f.reject(
                "UNKNOWN_UNIT",
                format!("Thửa đất ở đơn vị {} không tồn tại", p.unit_code),
            ),
        }
    }
    // Reasons name what the applicant wrote by its place in the form, never by value: a
    // reason travels to the portal and the projection (and a household business's tax
    // code is its owner's citizen ID).
    for (i, t) in d.enterprise_tax_codes.iter().enumerate() {
        if !ids::check_tax_code(t) {
            f.reject(
                "INVALID_TAX_CODE",
                format!("Mã số thuế doanh nghiệp thứ {} khai trong hồ sơ không hợp lệ", i + 1),
            );
        }
    }

    if let Some(p) = procedure {
        check_documents(p, s, &mut f);
        // The unit whose competence the dossier falls under: the parcel's for land,
        // the residence / head office otherwise.
        let residence = d.applicant.residence_unit_code.as_deref().and_then(|c| r.units.unit(c));
        let jurisdiction = match p.field {
            ProcedureField::Land => parcel_units.first().copied().or(residence),
            _ => residence,
        };
        match (jurisdiction, &receiving) {
            (None, _) => f.supplement(
                "MISSING_JURISDICTION",
                match p.field {
                    ProcedureField::Land => "Thiếu thông tin thửa đất (đơn vị, tờ bản đồ, số thửa)".to_owned(),
                    _ => "Thiếu nơi cư trú / trụ sở của người nộp".to_owned(),
                },
            ),
            (Some(j), Some(c)) => check_receivable(r, p, j, c, &mut f),
            (Some(_), None) => {}
        }
    }

    if !f.reject.is_empty() {
        f.reject.extend(f.supplement);
        return Err(Refusal {
            status: DossierStatus::RejectedAtReception,
            reasons: f.reject,
        });
    }
    if !f.supplement.is_empty() {
        return Err(Refusal {
            status: DossierStatus::SupplementRequested,
            reasons: f.supplement,
        });
    }
    let (Some(p), Some(c)) = (procedure, receiving) else {
        unreachable!("a missing procedure or center is always a rejection reason")
    };
    Ok(Admission {
        agency_code: agency_code(r, &c),
        procedure: p.summary(),
    })
}

fn check_applicant(r: &Reference, s: &DossierSubmitted, f: &mut Findings) {
    let a = &s.dossier.applicant;
    let birth_year = a.date_of_birth.map(|days| civil::civil_from_days(i64::from(days)).0);
    match (&a.citizen_id, a.kind) {
        (Some(id), _) => match ids::check_citizen_id(
            id,
            if a.kind == ApplicantKind::Citizen {
                birth_year
            } else {
                None
            },
        ) {
            Ok(()) => {}
            Err(CitizenIdProblem::NotTwelveDigits) => f.reject(
                "INVALID_CITIZEN_ID",
                "Số định danh cá nhân của người nộp phải gồm đúng 12 chữ số".to_owned(),
            ),
            Err(CitizenIdProblem::UnknownProvince) => f.reject(
                "INVALID_CITIZEN_ID",
                "Số định danh cá nhân của người nộp có mã tỉnh không hợp lệ".to_owned(),
            ),
            Err(CitizenIdProblem::BirthYearMismatch) => f.reject(
                "INVALID_CITIZEN_ID",
                "Số định danh cá nhân của người nộp không khớp với năm sinh khai trong hồ sơ".to_owned(),
            ),
        },
        (None, ApplicantKind::Citizen) => f.reject(
            "MISSING_CITIZEN_ID",
            "Thiếu số định danh cá nhân của người nộp".to_owned(),
        ),
        (None, ApplicantKind::Business) => {}
    }
    if a.kind == ApplicantKind::Business {
        match &a.tax_code {
            Some(t) if ids::check_tax_code(t) => {}
            Some(_) => f.reject("INVALID_TAX_CODE", "Mã số thuế của người nộp không hợp lệ".to_owned()),
            None => f.reject(
                "INVALID_TAX_CODE",
                "Thiếu mã số thuế của tổ chức/hộ kinh doanh".to_owned(),
            ),
        }
    }
    if let Some(code) = &a.residence_unit_code {
        if r.units.unit(code).is_none() {
            f.reject(
                "UNKNOWN_UNIT",
                format!("Đơn vị cư trú {code} không phải đơn vị hành chính 2025"),
            );
        }
    }
}

fn check_documents(p: &Procedure, s: &DossierSubmitted, f: &mut Findings) {
    for kind in &p.required_documents {
        if !s.dossier.documents.iter().any(|d| &d.kind == kind) {
            f.supplement("MISSING_DOCUMENT", format!("Thiếu giấy tờ bắt buộc: {kind}"));
        }
    }
    for doc in &s.dossier.documents {
        if doc.uri.trim().is_empty() || !ids::is_sha256_hex(&doc.sha256) {
            f.supplement(
                "INVALID_DOCUMENT",
                format!("Giấy tờ {} thiếu đường dẫn hoặc mã băm SHA-256 không hợp lệ", doc.kind),
            );
        }
    }
}

/// May this center receive this procedure for a dossier under `jurisdiction`?
/// - nationwide procedures: any center in the country;
/// - otherwise only centers of the jurisdiction's province; there, boundary-free
///   procedures anywhere, others only at the competent place (the commune itself, or
///   the provincial center for province-level procedures).
fn check_receivable(r: &Reference, p: &Procedure, jurisdiction: &Unit, c: &Center<'_>, f: &mut Findings) {
    if p.nationwide {
        return;
    }
    let j_province = &r.units.province_of(jurisdiction).code;
    if &c.province(r) != j_province {
        f.reject(
            "NOT_RECEIVABLE_AT_UNIT",
            format!(
                "Thủ tục {} chỉ được tiếp nhận tại tỉnh có thẩm quyền ({}), không tiếp nhận liên tỉnh",
                p.code,
                r.units.province_of(jurisdiction).name
            ),
        );
        return;
    }
    if p.boundary_free {
        return;
    }
    let ok = match (p.level, c) {
        (CompetentLevel::Commune, Center::Commune(u)) => u.code == jurisdiction.code,
        (CompetentLevel::Commune, Center::Provincial { .. }) => false,
        (CompetentLevel::Province, Center::Provincial { .. }) => true,
        (CompetentLevel::Province, Center::Commune(_)) => false,
    };
    if !ok {
        f.reject(
            "NOT_RECEIVABLE_AT_UNIT",
            format!(
                "Thủ tục {} không thuộc danh mục tiếp nhận không phụ thuộc địa giới; nộp tại {}",
                p.code,
                match p.level {
                    CompetentLevel::Commune => jurisdiction.name.clone(),
                    CompetentLevel::Province => "Trung tâm Phục vụ hành chính công tỉnh".to_owned(),
                }
            ),
        );
    }
}

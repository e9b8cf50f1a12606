//! Routing on the real 2025 units and the real catalog: every unit of Quảng Ninh, the
//! departments, cross-province reception, desks, and every kind of bad input.

use motcua_reference::civil::{days_from_civil, VN_OFFSET_MS};
use motcua_reference::{Procedure, Reference};
use motcua_routing::{
    AuthorityLevel, Center, Error, ProcedureId, RouteQuery, RouteRequest, RoutingTables, Transfer, UnitId, FIELDS,
};
use motcua_schemas::{CompetentLevel, ProcedureField};
use proptest::prelude::*;

fn setup() -> (Reference, RoutingTables) {
    let reference = Reference::embedded().expect("reference data");
    let tables = RoutingTables::embedded(&reference).expect("routing tables");
    (reference, tables)
}

/// Tuesday 2025-11-25 09:00 in Vietnam.
fn tuesday_9am() -> i64 {
    days_from_civil(2025, 11, 25) * 86_400_000 + 9 * 3_600_000 - VN_OFFSET_MS
}

/// A query for `procedure` whose jurisdiction is `unit`, whatever the field.
fn query<'a>(procedure: &'a Procedure, unit: &'a str, center: &'a str) -> RouteQuery<'a> {
    RouteQuery {
        procedure_code: &procedure.code,
        residence_unit_code: Some(unit),
        parcel_unit_code: matches!(procedure.field, ProcedureField::Land | ProcedureField::Construction)
            .then_some(unit),
        head_office_unit_code: (procedure.field == ProcedureField::Business).then_some(unit),
        receiving_center_code: center,
        received_at_ms: tuesday_9am(),
    }
}

fn expected_department(field: ProcedureField) -> &'static str {
    match field {
        ProcedureField::Land => "NNMT",
        ProcedureField::Business => "TC",
        ProcedureField::Construction => "XD",
        ProcedureField::Residence => "CA",
        ProcedureField::CivilStatus | ProcedureField::Certification => "TP",
    }
}

#[test]
fn every_quang_ninh_unit_routes_commune_procedures_to_itself_and_province_ones_to_the_department() {
    let (reference, tables) = setup();
    let units: Vec<_> = reference.units.units_of("22").collect();
    assert_eq!(units.len(), 54);
    let loads = vec![0; tables.desk_count()];
    let active: Vec<_> = reference.catalog.procedures().iter().filter(|p| p.active).collect();
    let mut checked = 0;
    for unit in &units {
        // A neighbour in the same province, to receive boundary-free dossiers elsewhere.
        let other = units.iter().find(|u| u.code != unit.code).unwrap();
        for p in &active {
            let own_center = match p.level {
                CompetentLevel::Commune => unit.code.clone(),
                CompetentLevel::Province => "P22".to_owned(),
            };
            let decision = tables.route_codes(&query(p, &unit.code, &own_center), &loads).unwrap();
            let authority = tables.authority(decision.authority).unwrap();
            assert_eq!(decision.transfer, Transfer::None, "{} at {}", p.code, own_center);
            match p.level {
                CompetentLevel::Commune => {
                    assert_eq!(authority.code, unit.code);
                    assert_eq!(authority.name, unit.name);
                    assert_eq!(authority.level, AuthorityLevel::Commune);
                }
                CompetentLevel::Province => {
                    assert_eq!(authority.code, format!("S22.{}", expected_department(p.field)));
                    assert!(authority.name.ends_with(" tỉnh Quảng Ninh"), "{}", authority.name);
                    assert_eq!(authority.level, AuthorityLevel::Department);
                }
            }
            let desk = tables.desk(decision.desk).unwrap();
            assert_eq!(desk.authority, decision.authority);

            // The same dossier received at another commune of the province: boundary-free
            // procedures are transferred to the same authority, others are refused.
            match tables.route_codes(&query(p, &unit.code, &other.code), &loads) {
                Ok(d) => {
                    assert!(p.boundary_free || p.nationwide, "{}", p.code);
                    assert_eq!(d.authority, decision.authority);
                    assert_eq!(d.transfer, Transfer::WithinProvince);
                }
                Err(e) => {
                    assert!(!p.boundary_free && !p.nationwide, "{}: {e}", p.code);
                    assert_eq!(e.reason_code(), "NOT_RECEIVABLE_AT_UNIT");
                    assert!(e.to_string().contains(&own_center), "{e}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 54 * active.len());

    // Every field has its department in Quảng Ninh, even where the catalog has no
    // province-level procedure of that field yet; civil status and certification share one.
    let qn = tables.province_id("22").unwrap();
    for field in FIELDS {
        let d = tables.department(qn, field).unwrap();
        assert_eq!(
            tables.authority(d).unwrap().code,
            format!("S22.{}", expected_department(field))
        );
    }
    assert_eq!(
        tables.department(qn, ProcedureField::CivilStatus),
        tables.department(qn, ProcedureField::Certification)
    );
    let hn = tables.province_id("01").unwrap();
    let hn_land = tables
        .authority(tables.department(hn, ProcedureField::Land).unwrap())
        .unwrap();
    assert_eq!(hn_land.name, "Sở Nông nghiệp và Môi trường thành phố Hà Nội");
}

#[test]
fn the_jurisdiction_follows_the_field() {
    let (reference, tables) = setup();
    let loads = [];
    let find = |field, level| {
        reference
            .catalog
            .procedures()
            .iter()
            .find(|p| p.active && p.field == field && p.level == level && p.boundary_free)
            .unwrap()
    };
    let (residence, parcel, office) = ("07090", "07093", "07081");
    let route = |p: &Procedure, parcel_code: Option<&str>, office_code: Option<&str>| {
        let q = RouteQuery {
            procedure_code: &p.code,
            residence_unit_code: Some(residence),
            parcel_unit_code: parcel_code,
            head_office_unit_code: office_code,
            receiving_center_code: "P22",
            received_at_ms: tuesday_9am(),
        };
        tables
            .authority(tables.route_codes(&q, &loads).unwrap().authority)
            .unwrap()
            .code
            .clone()
    };
    assert_eq!(
        reference.units.unit(residence).unwrap().province,
        reference.units.unit(parcel).unwrap().province
    );
    assert_eq!(
        route(
            find(ProcedureField::Land, CompetentLevel::Commune),
            Some(parcel),
            Some(office)
        ),
        parcel
    );
    assert_eq!(
        route(find(ProcedureField::Land, CompetentLevel::Commune), None, None),
        residence
    );
    assert_eq!(
        route(
            find(ProcedureField::Construction, CompetentLevel::Commune),
            Some(parcel),
            None
        ),
        parcel
    );
    assert_eq!(
        route(find(ProcedureField::Construction, CompetentLevel::Commune), None, None),
        residence
    );
    assert_eq!(
        route(
            find(ProcedureField::Business, CompetentLevel::Commune),
            Some(parcel),
            Some(office)
        ),
        office
    );
    assert_eq!(
        route(
            find(ProcedureField::CivilStatus, CompetentLevel::Commune),
            Some(parcel),
            Some(office)
        ),
        residence
    );
    assert_eq!(
        route(
            find(ProcedureField::Residence, CompetentLevel::Commune),
            Some(parcel),
            Some(office)
        ),
        residence
    );
    assert_eq!(
        route(
            find(ProcedureField::Certification, CompetentLevel::Commune),
            Some(parcel),
            Some(office)
        ),
        residence
    );
}

#[test]
fn cross_province_reception_is_a_transfer_only_for_nationwide_procedures() {
    let (reference, tables) = setup();
    let qn_unit = reference.units.units_of("22").next().unwrap().code.clone();
    let hanoi_center = "00070"; // Phường Hoàn Kiếm
    let nationwide = reference
        .catalog
        .procedures()
        .iter()
        .find(|p| p.active && p.nationwide)
        .unwrap();
    let d = tables
        .route_codes(&query(nationwide, &qn_unit, hanoi_center), &[])
        .unwrap();
    assert_eq!(d.transfer, Transfer::AcrossProvinces);
    assert!(d.transfer.is_transfer());
    assert_eq!(tables.authority(d.authority).unwrap().code, qn_unit);
    let d = tables.route_codes(&query(nationwide, &qn_unit, "P01"), &[]).unwrap();
    assert_eq!(d.transfer, Transfer::AcrossProvinces);

    let local_only = reference
        .catalog
        .procedures()
        .iter()
        .find(|p| p.active && !p.nationwide && p.boundary_free)
        .unwrap();
    let e = tables
        .route_codes(&query(local_only, &qn_unit, hanoi_center), &[])
        .unwrap_err();
    assert_eq!(e.reason_code(), "NOT_RECEIVABLE_AT_UNIT");
    let message = e.to_string();
    assert!(
        message.contains("Quảng Ninh") && message.contains("Thành phố Hà Nội") && message.contains("00070"),
        "{message}"
    );
}

#[test]
fn desks_are_chosen_by_field_and_least_load() {
    let (reference, tables) = setup();
    let residence = reference
        .catalog
        .procedures()
        .iter()
        .find(|p| p.active && p.field == ProcedureField::Residence)
        .unwrap();
    let unit = "07090";
    let mut loads = vec![0u32; tables.desk_count()];
    let authority = tables
        .route_codes(&query(residence, unit, unit), &loads)
        .unwrap()
        .authority;
    let desks: Vec<_> = tables.desks_of(authority).collect();
    let code = |d| tables.desk(d).unwrap().code;
    assert_eq!(
        desks.iter().map(|&d| code(d)).collect::<Vec<_>>(),
        ["DDXD", "TPHT", "CT", "KT", "TH1", "TH2"]
    );
    // Only CT, TH1 and TH2 serve residence procedures; empty loads → the first of them.
    let pick = |loads: &[u32]| code(tables.route_codes(&query(residence, unit, unit), loads).unwrap().desk);
    assert_eq!(pick(&loads), "CT");
    loads[desks[2].index()] = 5;
    loads[desks[4].index()] = 3;
    loads[desks[5].index()] = 4;
    assert_eq!(pick(&loads), "TH1");
    loads[desks[0].index()] = 0; // DDXD is idle but does not serve residence.
    loads[desks[4].index()] = 9;
    assert_eq!(pick(&loads), "TH2");
    // A short loads slice counts the missing desks as empty.
    assert_eq!(pick(&loads[..desks[5].index()]), "TH2");
    assert_eq!(pick(&[]), "CT");
}

#[test]
fn unknown_codes_are_errors_with_reasons() {
    let (reference, tables) = setup();
    let p = reference
        .catalog
        .procedures()
        .iter()
        .find(|p| p.active && p.field == ProcedureField::Residence)
        .unwrap();
    let base = query(p, "07090", "07090");
    let err = |q: RouteQuery<'_>| tables.route_codes(&q, &[]).unwrap_err();

    let e = err(RouteQuery {
        procedure_code: "9.999999",
        ..base
    });
    assert_eq!(
        (e.reason_code(), e.to_string().as_str()),
        ("UNKNOWN_PROCEDURE", "procedure '9.999999' is not in the catalog")
    );
    let inactive = reference.catalog.procedures().iter().find(|p| !p.active).unwrap();
    assert_eq!(
        err(RouteQuery {
            procedure_code: &inactive.code,
            ..base
        })
        .reason_code(),
        "PROCEDURE_INACTIVE"
    );
    for bad in ["99999", "", "abc", "123456", "-1", "0709O"] {
        let e = err(RouteQuery {
            residence_unit_code: Some(bad),
            ..base
        });
        assert!(matches!(e, Error::UnknownUnit { .. }), "{bad}: {e}");
        assert_eq!(e.reason_code(), "UNKNOWN_UNIT");
    }
    assert!(err(RouteQuery {
        parcel_unit_code: Some("99999"),
        ..base
    })
    .to_string()
    .starts_with("land parcel unit '99999'"));
    assert!(err(RouteQuery {
        head_office_unit_code: Some("x"),
        ..base
    })
    .to_string()
    .starts_with("head office unit"));
    // Short unit codes are zero-padded like AdminUnits::unit; centers must be exact.
    assert!(tables
        .route_codes(
            &RouteQuery {
                residence_unit_code: Some("7090"),
                ..base
            },
            &[]
        )
        .is_ok());
    for bad in ["7090", "P99", "P", "P123", "Q22", "", "p22", "P2x", "99999"] {
        let e = err(RouteQuery {
            receiving_center_code: bad,
            ..base
        });
        assert_eq!(e.reason_code(), "UNKNOWN_RECEIVING_UNIT", "{bad}");
    }
    let e = err(RouteQuery {
        residence_unit_code: None,
        ..base
    });
    assert_eq!(e.reason_code(), "MISSING_JURISDICTION");
    assert!(e.to_string().contains("residence"), "{e}");
    let e = err(RouteQuery {
        received_at_ms: i64::MAX,
        ..base
    });
    assert_eq!(e.reason_code(), "OUTSIDE_CALENDAR");

    // Ids these tables did not issue (e.g. kept across a reload) are errors too.
    let ok = tables.resolve(&base).unwrap();
    for stale in [
        RouteRequest {
            procedure: ProcedureId::new(u32::MAX),
            ..ok
        },
        RouteRequest {
            residence: Some(UnitId::new(1_000_000)),
            ..ok
        },
        RouteRequest {
            center: Center::Commune(UnitId::new(1_000_000)),
            ..ok
        },
        RouteRequest {
            center: Center::Provincial(motcua_routing::ProvinceId::new(34)),
            ..ok
        },
    ] {
        assert_eq!(tables.route(&stale, &[]).unwrap_err().reason_code(), "STALE_ROUTING_ID");
    }
    assert!(tables
        .choose_desk(motcua_routing::AuthorityId::new(u32::MAX), ProcedureField::Land, &[])
        .is_err());
}

#[test]
fn incomplete_data_is_refused_when_building() {
    let reference = Reference::embedded().unwrap();
    let departments = motcua_routing::Departments::parse(
        "d.csv",
        "province,field,code,name\n*,land,NNMT,Sở Nông nghiệp và Môi trường\n",
    )
    .unwrap();
    let e = RoutingTables::build(
        &reference,
        &departments,
        &motcua_routing::DeskLayout::embedded().unwrap(),
        motcua_routing::Calendar::embedded().unwrap(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("no department decides residence procedures"),
        "{e}"
    );
    let e = motcua_routing::DeskLayout::parse("k.csv", "level,code,name,fields\ncommune,A,A,land\nprovince,B,B,*\n")
        .unwrap_err();
    assert!(e.to_string().contains("no commune desk serves field residence"), "{e}");
    // A province's own line overrides the default.
    let departments = motcua_routing::Departments::parse(
        "d.csv",
        &format!(
            "{}22,land,TNMT,Sở Tài nguyên và Môi trường\n",
            motcua_routing::EMBEDDED_DEPARTMENTS
        ),
    )
    .unwrap();
    assert_eq!(departments.rule_for("22", ProcedureField::Land).unwrap().code, "TNMT");
    assert_eq!(departments.rule_for("01", ProcedureField::Land).unwrap().code, "NNMT");
}

#[test]
fn a_full_decision_carries_the_deadline_of_the_procedure() {
    let (reference, tables) = setup();
    let p = reference.catalog.get("1.012811").unwrap(); // land, province level, 10 working days
    let d = tables.route_codes(&query(p, "07090", "P22"), &[]).unwrap();
    assert_eq!(d.deadline.clock_start_ms, tuesday_9am());
    // 10 working days from Tuesday 25 Nov 2025 09:00: Tuesday 9 Dec 09:00.
    assert_eq!(
        d.deadline.due_ms,
        days_from_civil(2025, 12, 9) * 86_400_000 + 9 * 3_600_000 - VN_OFFSET_MS
    );
    assert_eq!(d.deadline, tables.deadline(tuesday_9am(), p.lead_time).unwrap());
}

proptest! {
    /// Any unit, any active procedure, any center code: a decision or a reasoned error,
    /// never a panic; and the resolved path agrees with the code path.
    #[test]
    fn random_inputs_route_or_fail_with_a_reason(unit in 0usize..3321, center in 0usize..3321, p in 0usize..200, provincial in any::<bool>(), t in any::<i64>()) {
        let (reference, tables) = setup_cached();
        let procedures = reference.catalog.procedures();
        let procedure = &procedures[p % procedures.len()];
        let unit = &reference.units.units()[unit].code;
        let center_code = if provincial {
            reference.units.province_of(&reference.units.units()[center]).center_code()
        } else {
            reference.units.units()[center].code.clone()
        };
        let q = RouteQuery { received_at_ms: t, ..query(procedure, unit, &center_code) };
        let by_codes = tables.route_codes(&q, &[]);
        let resolved = tables.resolve(&q).and_then(|r| tables.route(&r, &[]));
        prop_assert_eq!(by_codes.as_ref().ok(), resolved.as_ref().ok());
        if let Err(e) = by_codes {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

fn setup_cached() -> &'static (Reference, RoutingTables) {
    static TABLES: std::sync::OnceLock<(Reference, RoutingTables)> = std::sync::OnceLock::new();
    TABLES.get_or_init(setup)
}

/// A center open on Saturday mornings (from a unit hours file) has deadlines of its own
/// and says so in its calendar version; other centers keep the default calendar. Bad
/// lines are refused with the file and line.
#[test]
fn a_center_with_its_own_hours_counts_its_own_working_time() {
    let reference = Reference::embedded().expect("reference data");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unit-hours.csv");
    let load = |body: &str| {
        std::fs::write(&path, format!("center,hours,saturday\n{body}")).expect("write");
        RoutingTables::load(
            &reference,
            &motcua_routing::RoutingFiles {
                unit_hours: Some(path.clone()),
                ..Default::default()
            },
        )
    };
    let tables = load("P22,,07:30-11:30\n07090,\"07:30-11:30,13:00-16:30\",\n").expect("loads");
    let p = reference.catalog.get("1.012811").unwrap(); // land, province level, 10 working days
    let d = tables.route_codes(&query(p, "07090", "P22"), &[]).unwrap();
    // Two Saturday mornings (29 Nov, 6 Dec: 4 h each) make a working day: Monday 8 Dec
    // 09:00 instead of Tuesday 9 Dec.
    let day = |d: u32| days_from_civil(2025, 12, d) * 86_400_000 - VN_OFFSET_MS;
    assert_eq!(d.deadline.due_ms, day(8) + 9 * 3_600_000);
    let p22 = tables.calendar_of_center("P22");
    assert!(p22.saturday_hours().is_some());
    assert_ne!(p22.version(), tables.calendar().version());
    // A commune center with other weekday hours (7.5 h a day); one without keeps the default.
    assert_eq!(tables.calendar_of_center("07090").hours().per_day_ms(), 27_000_000);
    let other = reference.units.units_of("22").find(|u| u.code != "07090").unwrap();
    assert_eq!(
        tables.calendar_of_center(&other.code).version(),
        tables.calendar().version()
    );
    for (body, expect) in [
        ("99999,,07:30-11:30\n", "center 99999, which is neither"),
        ("P22,,\n", "neither its own hours nor Saturday hours"),
        ("P22,,07:30-11:30\nP22,,08:00-11:00\n", "P22 appears twice"),
        ("P22,,7h-11h\n", "Saturday hours of P22"),
    ] {
        let e = load(body).expect_err(body).to_string();
        assert!(e.contains(expect), "{body}: {e}");
    }
}

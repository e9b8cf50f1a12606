//! Small, valid example events: used by tests, benchmarks and documentation.

use std::collections::BTreeMap;

use crate::*;

pub fn dossier() -> Dossier {
    let mut form_fields = BTreeMap::new();
    form_fields.insert("purpose".to_owned(), "Mua bán chuyển nhượng".to_owned());
    Dossier {
        dossier_id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0".to_owned(),
        portal: "dichvucong.quangninh.gov.vn".to_owned(),
        channel: Channel::Online,
        receiving_unit_code: "06652".to_owned(),
        procedure_code: "1.004227".to_owned(),
        applicant: Applicant {
            kind: ApplicantKind::Citizen,
            citizen_id: Some("022090001234".to_owned()),
            tax_code: None,
            full_name: "Nguyễn Thị Hương".to_owned(),
            date_of_birth: Some(7_440),
            contact: Contact {
                phone: Some("0912345678".to_owned()),
                email: None,
                postal_address: Some("Tổ 3, Khu 5, Phường Hạ Long".to_owned()),
            },
            residence_unit_code: Some("06652".to_owned()),
        },
        land_parcels: vec![LandParcel {
            unit_code: "06652".to_owned(),
            map_sheet: 12,
            parcel_number: 345,
        }],
        enterprise_tax_codes: vec![],
        documents: vec![Document {
            kind: "DON_DE_NGHI".to_owned(),
            uri: "s3://portal/dossiers/0f1e2d3c/don.pdf".to_owned(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            digitized: false,
        }],
        form_fields,
        submitted_at: 1_764_036_000_000,
    }
}

pub fn procedure() -> ProcedureSummary {
    ProcedureSummary {
        code: "1.004227".to_owned(),
        name: "Đăng ký biến động quyền sử dụng đất".to_owned(),
        field: ProcedureField::Land,
        level: CompetentLevel::Commune,
        lead_time: 10,
        lead_time_unit: LeadTimeUnit::WorkingDays,
        fee_vnd: 100_000,
    }
}

pub fn submitted() -> DossierSubmitted {
    DossierSubmitted {
        event_id: "5b0e6a2e-3f4b-4c1d-9e8f-7a6b5c4d3e2f".to_owned(),
        dossier: dossier(),
        published_at: 1_764_036_000_500,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
    }
}

pub fn accepted() -> DossierAccepted {
    DossierAccepted {
        event_id: derived_event_id("5b0e6a2e-3f4b-4c1d-9e8f-7a6b5c4d3e2f", "intake", "accepted"),
        causation_id: "5b0e6a2e-3f4b-4c1d-9e8f-7a6b5c4d3e2f".to_owned(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        receiving_agency_code: "H22.06652".to_owned(),
        received_at: 1_764_036_001_000,
        procedure: procedure(),
        dossier: dossier(),
        traceparent: None,
    }
}

/// One example of every event type, in `Topic::ALL` order: the sample dossier's life (its
/// ids derived as the stages derive them, realistic UTC times), plus a supplement request
/// and a dead letter. The data dictionary takes its examples from these.
pub fn events() -> Vec<AnyEvent> {
    let d = dossier();
    let p = procedure();
    let submitted = submitted();
    let accepted = accepted();
    let code = accepted.dossier_code.clone();
    let received_at = accepted.received_at;
    // 10 working days after reception, on the working-day calendar: 9 December, 09:00 in Vietnam.
    let due_at = 1_765_245_600_000;
    let verified = DossierVerified {
        event_id: derived_event_id(&accepted.event_id, component::VERIFY, "verified"),
        causation_id: accepted.event_id.clone(),
        dossier_code: code.clone(),
        received_at,
        procedure: p.clone(),
        dossier: d.clone(),
        checks: vec![
            RegistryCheck {
                registry: Registry::Population,
                subject: "022090001234".to_owned(),
                outcome: CheckOutcome::Matched,
                detail: None,
            },
            RegistryCheck {
                registry: Registry::Land,
                subject: "06652/12/345".to_owned(),
                outcome: CheckOutcome::Matched,
                detail: None,
            },
        ],
        verified_at: 1_764_036_003_000,
        traceparent: None,
    };
    let bill_reference = "HD3F2A9C0B7E14D6A5".to_owned();
    let issued_at = 1_764_036_004_000;
    let requested = PaymentRequested {
        event_id: derived_event_id(&verified.event_id, component::PAYMENT, "requested"),
        causation_id: verified.event_id.clone(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: code.clone(),
        bill_reference: bill_reference.clone(),
        fee_vnd: 100_000,
        charge_vnd: 0,
        amount_vnd: 100_000,
        payer_name: "Nguyễn Thị Hương".to_owned(),
        description: format!("Lệ phí, phí hồ sơ {code} ({})", p.name),
        issued_at,
        expires_at: issued_at + 72 * 3_600_000,
        traceparent: None,
    };
    let confirmed = PaymentConfirmed {
        event_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".to_owned(),
        bill_reference: bill_reference.clone(),
        gateway: "paygov".to_owned(),
        gateway_transaction_id: "TX-1".to_owned(),
        amount_vnd: 100_000,
        outcome: PaymentOutcome::Failed,
        failure_reason: Some("thẻ bị từ chối".to_owned()),
        confirmed_at: 1_764_036_600_000,
    };
    let paid = DossierPaid {
        event_id: derived_event_id(&verified.event_id, component::PAYMENT, "paid"),
        causation_id: verified.event_id.clone(),
        dossier_code: code.clone(),
        received_at,
        procedure: p.clone(),
        dossier: d.clone(),
        bill_reference: Some(bill_reference),
        amount_vnd: 100_000,
        paid_at: 1_764_036_900_000,
        traceparent: None,
    };
    let routed = DossierRouted {
        event_id: derived_event_id(&paid.event_id, component::ROUTE, "routed"),
        causation_id: paid.event_id.clone(),
        dossier_code: code.clone(),
        received_at,
        procedure: p,
        dossier: d.clone(),
        competent_unit_code: "06652".to_owned(),
        competent_unit_name: "Phường Hạ Long".to_owned(),
        desk: "DDXD".to_owned(),
        transferred: false,
        due_at,
        routed_at: 1_764_036_901_000,
        traceparent: None,
        calendar_version: Some("sha256:9f2c0d6b1e4a7c3b5d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e".to_owned()),
        clock_pauses: vec![],
    };
    let decided_at = 1_764_727_200_000;
    let decided = DossierDecided {
        event_id: derived_event_id(&routed.event_id, component::BACKOFFICE, "decided"),
        dossier_id: d.dossier_id.clone(),
        dossier_code: code.clone(),
        procedure_code: "1.004227".to_owned(),
        competent_unit_code: "06652".to_owned(),
        decision: Decision::Approved,
        reasons: vec![],
        decided_by: "06652/DDXD".to_owned(),
        applicant_citizen_id: Some("022090001234".to_owned()),
        applicant_tax_code: None,
        received_at,
        due_at,
        decided_at,
        traceparent: None,
        appraised_at: Some(decided_at - 3_600_000),
    };
    let reference = format!("06652-KQ-{code}");
    let document_sha256 = "c3a1f0e27b9d48561e0f2a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7".to_owned();
    let delivered_at = decided_at + 2_000;
    let signed_record = format!(
        r#"{{"decided_at":{decided_at},"decision":"approved","documents":[{{"reference":"{reference}","sha256":"{document_sha256}"}}],"dossier_code":"{code}","due_at":{due_at},"format":"motcua-result-record/1","issuer":"06652","kid":"k1","procedure_code":"1.004227","signed_at":{delivered_at},"timeliness":"early"}}"#
    );
    let completed = DossierCompleted {
        event_id: derived_event_id(&decided.event_id, component::RESULT, "completed"),
        causation_id: decided.event_id.clone(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: code.clone(),
        procedure_code: "1.004227".to_owned(),
        competent_unit_code: "06652".to_owned(),
        decision: Decision::Approved,
        result_document: ResultDocument {
            uri: format!("wallet://022090001234/{reference}"),
            reference,
            sha256: document_sha256,
            // Not real signatures: 64 bytes each, the length of an Ed25519 signature.
            signature: (0..64).collect(),
            signing_key_id: "k1".to_owned(),
        },
        wallet_owner: "022090001234".to_owned(),
        received_at,
        due_at,
        delivered_at,
        timeliness: Timeliness::Early,
        traceparent: None,
        signed_record: Some(signed_record),
        record_signature: Some((64..128).collect()),
        wallet_receipt_id: Some("EW-6f1c2a9d0b7e4c35".to_owned()),
    };
    // A submission intake asked a supplement for: no dossier code, no due time yet.
    let status = DossierStatusChanged {
        event_id: derived_event_id(&submitted.event_id, component::INTAKE, "status"),
        causation_id: Some(submitted.event_id.clone()),
        dossier_id: d.dossier_id.clone(),
        dossier_code: None,
        status: DossierStatus::SupplementRequested,
        status_code: DossierStatus::SupplementRequested.code(),
        procedure_code: Some("1.004227".to_owned()),
        stage: component::INTAKE.to_owned(),
        reasons: vec![Reason {
            code: "MISSING_DOCUMENT".to_owned(),
            message: "Thiếu giấy tờ bắt buộc: GIAY_TO_TUY_THAN".to_owned(),
        }],
        unit_code: Some("06652".to_owned()),
        due_at: None,
        occurred_at: submitted.published_at,
        traceparent: None,
        lookup_token: None,
    };
    // A portal published JSON instead of Avro.
    let dead = DeadLetter {
        event_id: derived_event_id("dossier.submitted/3/42", component::INTAKE, "dead-letter"),
        stage: component::INTAKE.to_owned(),
        reason_code: "BAD_MAGIC_BYTE".to_owned(),
        reason: "message starts with byte 0x7b, not the Confluent magic byte 0x00".to_owned(),
        origin_topic: "dossier.submitted".to_owned(),
        origin_partition: 3,
        origin_offset: 42,
        origin_key: Some(d.dossier_id.clone().into_bytes()),
        origin_value: Some(br#"{"dossier": 1}"#.to_vec()),
        failed_at: 1_764_036_000_600,
    };
    // The citizen handed in the missing paper three days after intake asked for it.
    let supplemented = DossierSupplemented {
        event_id: "5b0e3c1d-8f4a-4c2e-9d7b-1a2b3c4d5e6f".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: None,
        portal: d.portal.clone(),
        documents: vec![Document {
            kind: "GIAY_TO_TUY_THAN".to_owned(),
            uri: format!("https://dichvucong.example.gov.vn/files/{}/cccd-2.pdf", d.dossier_id),
            sha256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90".to_owned(),
            digitized: false,
        }],
        form_fields: BTreeMap::new(),
        land_parcels: None,
        residence_unit_code: None,
        full_name: None,
        date_of_birth: None,
        supplemented_at: submitted.published_at + 3 * 86_400_000,
        published_at: submitted.published_at + 3 * 86_400_000 + 800,
        traceparent: None,
    };
    let withdrawn = DossierWithdrawn {
        event_id: "7c1f4d2e-9a5b-4d3f-8e6c-2b3c4d5e6f70".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: Some(code.clone()),
        portal: d.portal.clone(),
        reason_code: Some("APPLICANT_REQUEST".to_owned()),
        withdrawn_at: 1_764_036_950_000,
        published_at: 1_764_036_950_400,
        traceparent: None,
    };
    // The land office will miss the due time: a written apology and a new date.
    let reappointed = DossierReappointed {
        event_id: "8d2a5e3f-0b6c-4e4a-9f7d-3c4d5e6f7081".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: code.clone(),
        competent_unit_code: "06652".to_owned(),
        reason_code: "FIELD_VERIFICATION_NEEDED".to_owned(),
        apology_reference: format!("06652-XL-{code}"),
        previous_due_at: 1_764_036_000_000 + 10 * 86_400_000,
        new_due_at: 1_764_036_000_000 + 13 * 86_400_000,
        issued_by: "officer-0417".to_owned(),
        issued_at: 1_764_036_000_000 + 9 * 86_400_000,
        traceparent: None,
    };
    // The land office's officer asks for a clearer copy of the land-use certificate.
    let supplement_requested = DossierSupplementRequested {
        event_id: "9e3b6f40-1c7d-4f5b-a08e-4d5e6f708192".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: code.clone(),
        competent_unit_code: "06652".to_owned(),
        reasons: vec![Reason {
            code: "DOCUMENT_ILLEGIBLE".to_owned(),
            message: "Bản sao giấy chứng nhận không rõ; đề nghị nộp bản rõ nét".to_owned(),
        }],
        requested_by: "officer-0417".to_owned(),
        requested_at: 1_764_036_000_000 + 2 * 86_400_000,
        traceparent: None,
    };
    vec![
        submitted.into(),
        accepted.into(),
        verified.into(),
        requested.into(),
        confirmed.into(),
        paid.into(),
        routed.into(),
        decided.into(),
        completed.into(),
        status.into(),
        dead.into(),
        supplemented.into(),
        withdrawn.into(),
        reappointed.into(),
        supplement_requested.into(),
    ]
}

/// [`events`], each encoded by the codec.
pub fn one_of_each(codec: &Codec) -> Result<Vec<(Topic, Vec<u8>)>> {
    events()
        .into_iter()
        .map(|e| {
            let mut bytes = Vec::new();
            e.encode(codec, &mut bytes)?;
            Ok((e.topic(), bytes))
        })
        .collect()
}

const LOG_MIN: i64 = 60_000;
const LOG_DAY: i64 = 86_400_000;
const LOG_T0: i64 = 1_764_036_000_000;

/// The log of `dossiers` straight lives: eleven events per dossier (submitted, accepted,
/// received status, verified, bill, obligation status, paid, routed, processing status,
/// decided, completed), emitted stage by stage for all dossiers (as they flow through the
/// pipeline), so a batch touches as many different dossiers as it has events. Dossier `i`
/// is submitted at 2025-11-25 09:00 (UTC+7) + `i` s, decided five days later. The
/// workload of the projection's benchmarks and replay tests.
pub fn event_log(dossiers: usize) -> Vec<AnyEvent> {
    let base = dossier();
    let procedure = procedure();
    let mut stages: Vec<Vec<AnyEvent>> = (0..11).map(|_| Vec::with_capacity(dossiers)).collect();
    for i in 0..dossiers {
        let id = format!("bench-{i:08}");
        let code = format!("H22.06652-251125-{i:06}");
        let t = LOG_T0 + i as i64 * 1_000;
        let mut d = base.clone();
        d.dossier_id = id.clone();
        d.submitted_at = t;
        d.channel = if i % 4 == 0 { Channel::Counter } else { Channel::Online };
        let due = t + 10 * LOG_DAY;
        let status = |kind: &str, s: DossierStatus, stage: &str, at: i64, due: Option<i64>| -> AnyEvent {
            DossierStatusChanged {
                event_id: format!("{id}-{kind}"),
                causation_id: None,
                dossier_id: id.clone(),
                dossier_code: Some(code.clone()),
                status: s,
                status_code: s.code(),
                procedure_code: Some(procedure.code.clone()),
                stage: stage.into(),
                reasons: vec![],
                unit_code: Some("06652".into()),
                due_at: due,
                occurred_at: at,
                traceparent: None,
                lookup_token: None,
            }
            .into()
        };
        stages[0].push(
            DossierSubmitted {
                event_id: format!("{id}-sub"),
                dossier: d.clone(),
                published_at: t,
                traceparent: None,
            }
            .into(),
        );
        stages[1].push(
            DossierAccepted {
                event_id: format!("{id}-acc"),
                causation_id: format!("{id}-sub"),
                dossier_code: code.clone(),
                receiving_agency_code: "H22.06652".into(),
                received_at: t + LOG_MIN,
                procedure: procedure.clone(),
                dossier: d.clone(),
                traceparent: None,
            }
            .into(),
        );
        stages[2].push(status("received", DossierStatus::Received, "intake", t + LOG_MIN, None));
        stages[3].push(
            DossierVerified {
                event_id: format!("{id}-ver"),
                causation_id: format!("{id}-acc"),
                dossier_code: code.clone(),
                received_at: t + LOG_MIN,
                procedure: procedure.clone(),
                dossier: d.clone(),
                checks: vec![],
                verified_at: t + 5 * LOG_MIN,
                traceparent: None,
            }
            .into(),
        );
        stages[4].push(
            PaymentRequested {
                event_id: format!("{id}-bill"),
                causation_id: format!("{id}-ver"),
                dossier_id: id.clone(),
                dossier_code: code.clone(),
                bill_reference: format!("B{i}"),
                fee_vnd: 100_000,
                charge_vnd: 0,
                amount_vnd: 100_000,
                payer_name: "Nguyễn Thị Hương".into(),
                description: "Lệ phí".into(),
                issued_at: t + 10 * LOG_MIN,
                expires_at: t + LOG_DAY,
                traceparent: None,
            }
            .into(),
        );
        stages[5].push(status(
            "obligation",
            DossierStatus::FinancialObligationRequested,
            "payment",
            t + 10 * LOG_MIN,
            None,
        ));
        stages[6].push(
            DossierPaid {
                event_id: format!("{id}-paid"),
                causation_id: format!("{id}-bill"),
                dossier_code: code.clone(),
                received_at: t + LOG_MIN,
                procedure: procedure.clone(),
                dossier: d.clone(),
                bill_reference: Some(format!("B{i}")),
                amount_vnd: 100_000,
                paid_at: t + 20 * LOG_MIN,
                traceparent: None,
            }
            .into(),
        );
        stages[7].push(
            DossierRouted {
                event_id: format!("{id}-routed"),
                causation_id: format!("{id}-paid"),
                dossier_code: code.clone(),
                received_at: t + LOG_MIN,
                procedure: procedure.clone(),
                dossier: d,
                competent_unit_code: "06652".into(),
                competent_unit_name: "UBND phường Hạ Long".into(),
                desk: "LAND-1".into(),
                transferred: false,
                due_at: due,
                routed_at: t + 30 * LOG_MIN,
                traceparent: None,
                calendar_version: Some("sha256:bench".into()),
                clock_pauses: Vec::new(),
            }
            .into(),
        );
        stages[8].push(status(
            "processing",
            DossierStatus::Processing,
            "route",
            t + 30 * LOG_MIN,
            Some(due),
        ));
        stages[9].push(
            DossierDecided {
                event_id: format!("{id}-dec"),
                dossier_id: id.clone(),
                dossier_code: code.clone(),
                procedure_code: procedure.code.clone(),
                competent_unit_code: "06652".into(),
                decision: Decision::Approved,
                reasons: vec![],
                decided_by: "officer".into(),
                applicant_citizen_id: None,
                applicant_tax_code: None,
                received_at: t + LOG_MIN,
                due_at: due,
                decided_at: t + 5 * LOG_DAY,
                traceparent: None,
                appraised_at: Some(t + 4 * LOG_DAY),
            }
            .into(),
        );
        stages[10].push(
            DossierCompleted {
                event_id: format!("{id}-done"),
                causation_id: format!("{id}-dec"),
                dossier_id: id.clone(),
                dossier_code: code.clone(),
                procedure_code: procedure.code.clone(),
                competent_unit_code: "06652".into(),
                decision: Decision::Approved,
                result_document: ResultDocument {
                    reference: format!("H22-GCN-{i}"),
                    sha256: "00".repeat(32),
                    signature: vec![0; 64],
                    signing_key_id: "k1".into(),
                    uri: "wallet://x".into(),
                },
                wallet_owner: "022090001234".into(),
                received_at: t + LOG_MIN,
                due_at: due,
                delivered_at: t + 5 * LOG_DAY + LOG_MIN,
                timeliness: Timeliness::Early,
                traceparent: None,
                signed_record: None,
                record_signature: None,
                wallet_receipt_id: None,
            }
            .into(),
        );
    }
    stages.into_iter().flatten().collect()
}

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

/// One example of every event type, in `Topic::ALL` order, each encoded by the codec.
pub fn one_of_each(codec: &Codec) -> Result<Vec<(Topic, Vec<u8>)>> {
    let d = dossier();
    let p = procedure();
    let verified = DossierVerified {
        event_id: "v-1".to_owned(),
        causation_id: "a-1".to_owned(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        received_at: 1,
        procedure: p.clone(),
        dossier: d.clone(),
        checks: vec![RegistryCheck {
            registry: Registry::Population,
            subject: "022090001234".to_owned(),
            outcome: CheckOutcome::Matched,
            detail: None,
        }],
        verified_at: 2,
        traceparent: None,
    };
    let requested = PaymentRequested {
        event_id: "pr-1".to_owned(),
        causation_id: "v-1".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        bill_reference: "BILL-22-0000001".to_owned(),
        fee_vnd: 100_000,
        charge_vnd: 0,
        amount_vnd: 100_000,
        payer_name: "Nguyễn Thị Hương".to_owned(),
        description: "Lệ phí đăng ký biến động".to_owned(),
        issued_at: 3,
        expires_at: 4,
        traceparent: None,
    };
    let confirmed = PaymentConfirmed {
        event_id: "pc-1".to_owned(),
        bill_reference: "BILL-22-0000001".to_owned(),
        gateway: "paygov".to_owned(),
        gateway_transaction_id: "TX-1".to_owned(),
        amount_vnd: 100_000,
        outcome: PaymentOutcome::Failed,
        failure_reason: Some("insufficient funds".to_owned()),
        confirmed_at: 5,
    };
    let paid = DossierPaid {
        event_id: "pd-1".to_owned(),
        causation_id: "pc-1".to_owned(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        received_at: 1,
        procedure: p.clone(),
        dossier: d.clone(),
        bill_reference: Some("BILL-22-0000001".to_owned()),
        amount_vnd: 100_000,
        paid_at: 6,
        traceparent: None,
    };
    let routed = DossierRouted {
        event_id: "r-1".to_owned(),
        causation_id: "pd-1".to_owned(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        received_at: 1,
        procedure: p,
        dossier: d.clone(),
        competent_unit_code: "06652".to_owned(),
        competent_unit_name: "Phường Hạ Long".to_owned(),
        desk: "land-1".to_owned(),
        transferred: false,
        due_at: 9,
        routed_at: 7,
        traceparent: None,
    };
    let decided = DossierDecided {
        event_id: "dc-1".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        procedure_code: "1.004227".to_owned(),
        competent_unit_code: "06652".to_owned(),
        decision: Decision::Approved,
        reasons: vec![],
        decided_by: "officer-7".to_owned(),
        applicant_citizen_id: Some("022090001234".to_owned()),
        applicant_tax_code: None,
        received_at: 1,
        due_at: 9,
        decided_at: 8,
        traceparent: None,
    };
    let completed = DossierCompleted {
        event_id: "cp-1".to_owned(),
        causation_id: "dc-1".to_owned(),
        dossier_id: d.dossier_id.clone(),
        dossier_code: "H22.06652-251125-0001".to_owned(),
        procedure_code: "1.004227".to_owned(),
        competent_unit_code: "06652".to_owned(),
        decision: Decision::Approved,
        result_document: ResultDocument {
            reference: "H22.06652-GCN-000001".to_owned(),
            sha256: "00".repeat(32),
            signature: vec![1, 2, 3, 255],
            signing_key_id: "k1".to_owned(),
            uri: "wallet://022090001234/H22.06652-GCN-000001".to_owned(),
        },
        wallet_owner: "022090001234".to_owned(),
        received_at: 1,
        due_at: 9,
        delivered_at: 8,
        timeliness: Timeliness::Early,
        traceparent: None,
        signed_record: None,
        record_signature: None,
    };
    let status = DossierStatusChanged {
        event_id: "s-1".to_owned(),
        causation_id: Some("a-1".to_owned()),
        dossier_id: d.dossier_id.clone(),
        dossier_code: None,
        status: DossierStatus::SupplementRequested,
        status_code: DossierStatus::SupplementRequested.code(),
        procedure_code: Some("1.004227".to_owned()),
        stage: "intake".to_owned(),
        reasons: vec![Reason {
            code: "MISSING_DOCUMENT".to_owned(),
            message: "Thiếu giấy tờ: GIAY_TO_TUY_THAN".to_owned(),
        }],
        unit_code: Some("06652".to_owned()),
        due_at: Some(10),
        occurred_at: 2,
        traceparent: None,
        lookup_token: None,
    };
    let dead = DeadLetter {
        event_id: "dl-1".to_owned(),
        stage: "intake".to_owned(),
        reason_code: "BAD_MAGIC_BYTE".to_owned(),
        reason: "not Avro".to_owned(),
        origin_topic: "dossier.submitted".to_owned(),
        origin_partition: 3,
        origin_offset: 42,
        origin_key: Some(b"k".to_vec()),
        origin_value: None,
        failed_at: 11,
    };
    Ok(vec![
        (Topic::Submitted, codec.encode(&submitted())?),
        (Topic::Accepted, codec.encode(&accepted())?),
        (Topic::Verified, codec.encode(&verified)?),
        (Topic::PaymentRequested, codec.encode(&requested)?),
        (Topic::PaymentConfirmed, codec.encode(&confirmed)?),
        (Topic::Paid, codec.encode(&paid)?),
        (Topic::Routed, codec.encode(&routed)?),
        (Topic::Decided, codec.encode(&decided)?),
        (Topic::Completed, codec.encode(&completed)?),
        (Topic::Status, codec.encode(&status)?),
        (Topic::DeadLetter, codec.encode(&dead)?),
    ])
}

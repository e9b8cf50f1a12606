//! Synthetic submissions, deterministic by seed: valid dossiers shaped like real ones for
//! the demo, load runs, benchmarks and tests, and deliberately defective ones.

use std::collections::BTreeMap;

use crate::world::{World, FAMILY, GIVEN_FEMALE, GIVEN_MALE, MIDDLE_FEMALE, MIDDLE_MALE, TRADE};
use motcua_reference::{Procedure, Reference, Unit};
use motcua_schemas::{
    Applicant, ApplicantKind, Channel, CompetentLevel, Contact, Document, Dossier, DossierSubmitted, LandParcel,
    ProcedureField,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use motcua_reference::ids::tax_check_digit;

/// Old (pre-2025) province prefixes that citizen IDs are issued with.
const ID_PREFIXES: &[u16] = &[1, 22, 22, 22, 24, 30, 31, 33, 34, 36, 38, 40, 79];

/// What is wrong with a deliberately defective submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    MissingDocument,
    BadCitizenId,
    UnknownProcedure,
    InactiveProcedure,
    UnknownReceivingUnit,
    /// A citizen's birth date typed a day late: the door accepts it, the population
    /// registry does not (verify asks for a supplement; the right date fixes it).
    BirthDateTypo,
}

impl Defect {
    pub const ALL: [Defect; 6] = [
        Defect::MissingDocument,
        Defect::BadCitizenId,
        Defect::UnknownProcedure,
        Defect::InactiveProcedure,
        Defect::UnknownReceivingUnit,
        Defect::BirthDateTypo,
    ];
}

/// Generates submissions for one province.
#[derive(Debug)]
pub struct Generator<'r> {
    reference: &'r Reference,
    rng: SmallRng,
    units: Vec<&'r Unit>,
    province: String,
    active: Vec<&'r Procedure>,
    weights: Vec<u32>,
    inactive: Vec<&'r Procedure>,
    seq: u64,
    seed: u64,
    /// Seeds the dossier and event ids (the seed unless [`Generator::with_id_salt`]).
    id_seed: u64,
    world: Option<&'r World>,
}

impl<'r> Generator<'r> {
    /// `province`: 2-digit code whose units receive (e.g. "22", Quảng Ninh).
    pub fn new(reference: &'r Reference, province: &str, seed: u64) -> Option<Self> {
        let province = reference.units.province(province)?.code.clone();
        let units: Vec<&Unit> = reference.units.units_of(&province).collect();
        let active: Vec<&Procedure> = reference.catalog.procedures().iter().filter(|p| p.active).collect();
        // Field reports: land, residence and certification make most of the load.
        let weights = active
            .iter()
            .map(|p| match p.field {
                ProcedureField::Land => 6,
                ProcedureField::Residence => 5,
                ProcedureField::Certification => 5,
                ProcedureField::CivilStatus => 3,
                ProcedureField::Business => 2,
                ProcedureField::Construction => 1,
            })
            .collect();
        let inactive = reference.catalog.procedures().iter().filter(|p| !p.active).collect();
        Some(Self {
            reference,
            rng: SmallRng::seed_from_u64(seed),
            units,
            province,
            active,
            weights,
            inactive,
            seq: 0,
            seed,
            id_seed: seed,
            world: None,
        })
    }

    /// Draws applicants, parcels and businesses from a synthetic registry world (which
    /// must be of the same province), so they verify against the registry simulator.
    pub fn with_world(mut self, world: &'r World) -> Self {
        self.world = Some(world);
        self
    }

    /// The same dossiers under other ids: for a rerun into a database that already holds
    /// this seed's dossiers (ids must be new for the rerun to be new work).
    pub fn with_id_salt(mut self, salt: u64) -> Self {
        self.id_seed = self.seed ^ salt.rotate_left(17);
        self
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.gen_range(0..items.len())]
    }

    fn unit(&mut self) -> &'r Unit {
        self.units[self.rng.gen_range(0..self.units.len())]
    }

    fn procedure(&mut self) -> &'r Procedure {
        let total: u32 = self.weights.iter().sum();
        let mut x = self.rng.gen_range(0..total);
        for (p, w) in self.active.iter().zip(&self.weights) {
            if x < *w {
                return p;
            }
            x -= w;
        }
        self.active[0]
    }

    fn citizen_id(&mut self, birth_year: i32) -> String {
        let prefix = *self.pick(ID_PREFIXES);
        let female = self.rng.gen_bool(0.5);
        let century_digit = (birth_year / 100 - 19) * 2 + i32::from(female);
        let serial: u32 = self.rng.gen_range(0..1_000_000);
        format!("{prefix:03}{century_digit}{:02}{serial:06}", birth_year % 100)
    }

    fn tax_code(&mut self) -> String {
        loop {
            let province: u8 = self.rng.gen_range(1..=96);
            let rest: u32 = self.rng.gen_range(0..10_000_000);
            let nine = format!("{province:02}{rest:07}");
            if let Some(c) = tax_check_digit(nine.as_bytes()) {
                return format!("{nine}{c}");
            }
        }
    }

    fn name(&mut self) -> String {
        let (middle, given) = if self.rng.gen_bool(0.5) {
            (MIDDLE_FEMALE, GIVEN_FEMALE)
        } else {
            (MIDDLE_MALE, GIVEN_MALE)
        };
        format!("{} {} {}", self.pick(FAMILY), self.pick(middle), self.pick(given))
    }

    fn sha256(&mut self) -> String {
        (0..4).map(|_| format!("{:016x}", self.rng.gen::<u64>())).collect()
    }

    /// A valid submission, submitted at `submitted_at` (epoch ms).
    pub fn valid(&mut self, submitted_at: i64) -> DossierSubmitted {
        let p = self.procedure();
        self.seq += 1;
        let phone = Some(format!("09{:08}", self.rng.gen_range(0..100_000_000u32)));
        let (applicant, land_parcels, jurisdiction) = match self.world {
            Some(world) => self.drawn_from_world(world, p, phone),
            None => self.invented(p, phone),
        };
        let channel = match self.rng.gen_range(0..100) {
            0..=69 => Channel::Online,
            70..=94 => Channel::Counter,
            _ => Channel::Postal,
        };
        // Boundary-free procedures are often received elsewhere in the province.
        let receiving = if !p.boundary_free {
            match p.level {
                CompetentLevel::Commune => jurisdiction,
                CompetentLevel::Province => format!("P{}", self.province),
            }
        } else if self.rng.gen_bool(0.25) {
            self.unit().code.clone()
        } else {
            jurisdiction
        };
        let documents = p
            .required_documents
            .iter()
            .map(|kind| Document {
                kind: kind.clone(),
                uri: format!("s3://portal-{}/{}/{kind}.pdf", self.province, self.seq),
                sha256: self.sha256(),
                digitized: channel != Channel::Online,
            })
            .collect();
        let mut form_fields = BTreeMap::new();
        form_fields.insert("ghi_chu".to_owned(), format!("Hồ sơ mẫu số {}", self.seq));
        let dossier_id = uuid::Uuid::from_u64_pair(self.id_seed, self.seq).to_string();
        DossierSubmitted {
            event_id: uuid::Uuid::from_u64_pair(self.id_seed ^ 0x5eed, self.seq).to_string(),
            dossier: Dossier {
                dossier_id,
                portal: match channel {
                    Channel::Online => "dichvucong.gov.vn".to_owned(),
                    _ => "motcua-counter".to_owned(),
                },
                channel,
                receiving_unit_code: receiving,
                procedure_code: p.code.clone(),
                applicant,
                land_parcels,
                enterprise_tax_codes: Vec::new(),
                documents,
                form_fields,
                submitted_at,
            },
            published_at: submitted_at + self.rng.gen_range(0..2_000),
            traceparent: None,
        }
    }

    /// An applicant (and parcel) made up on the spot: well-formed, unknown to any registry.
    fn invented(&mut self, p: &Procedure, phone: Option<String>) -> (Applicant, Vec<LandParcel>, String) {
        let residence = self.unit();
        let birth_year = self.rng.gen_range(1945..=2006);
        let dob_days = motcua_reference::civil::days_from_civil(
            birth_year,
            self.rng.gen_range(1..=12),
            self.rng.gen_range(1..=28),
        );
        let business = p.field == ProcedureField::Business;
        let applicant = Applicant {
            kind: if business {
                ApplicantKind::Business
            } else {
                ApplicantKind::Citizen
            },
            citizen_id: Some(self.citizen_id(birth_year)),
            tax_code: business.then(|| self.tax_code()),
            full_name: if business {
                format!("Hộ kinh doanh {} {}", self.pick(TRADE), self.pick(GIVEN_MALE))
            } else {
                self.name()
            },
            date_of_birth: (!business).then_some(dob_days as i32),
            contact: Contact {
                phone,
                email: None,
                postal_address: None,
            },
            residence_unit_code: Some(residence.code.clone()),
        };
        let land_parcels = if p.field == ProcedureField::Land {
            vec![LandParcel {
                unit_code: residence.code.clone(),
                map_sheet: self.rng.gen_range(1..=80),
                parcel_number: self.rng.gen_range(1..=900),
            }]
        } else {
            Vec::new()
        };
        (applicant, land_parcels, residence.code.clone())
    }

    /// An applicant drawn from a synthetic registry world: what they claim is what the
    /// registries hold, so verification succeeds unless the record itself says otherwise
    /// (a deceased citizen, a dissolved business, a disputed parcel).
    fn drawn_from_world(
        &mut self,
        world: &World,
        p: &Procedure,
        phone: Option<String>,
    ) -> (Applicant, Vec<LandParcel>, String) {
        let contact = Contact {
            phone,
            email: None,
            postal_address: None,
        };
        if p.field == ProcedureField::Business {
            let b = loop {
                if let Some(b) = world.business(self.rng.gen_range(0..world.businesses)) {
                    break b;
                }
            };
            let applicant = Applicant {
                kind: ApplicantKind::Business,
                citizen_id: Some(b.legal_representative_citizen_id.clone()),
                tax_code: Some(b.tax_code.clone()),
                full_name: b.name.clone(),
                date_of_birth: None,
                contact,
                residence_unit_code: Some(b.head_office_unit_code.clone()),
            };
            return (applicant, Vec::new(), b.head_office_unit_code);
        }
        let (citizen, parcels, jurisdiction) = if p.field == ProcedureField::Land {
            let parcel = world.parcel(self.rng.gen_range(0..world.parcels));
            let owner = world
                .citizen_by_id(&parcel.owners[0])
                .unwrap_or_else(|| world.citizen(0));
            let unit = parcel.unit_code.clone();
            let asked = LandParcel {
                unit_code: parcel.unit_code,
                map_sheet: parcel.map_sheet,
                parcel_number: parcel.parcel_number,
            };
            (owner, vec![asked], unit)
        } else {
            let c = world.citizen(self.rng.gen_range(0..world.citizens));
            let unit = c.residence_unit_code.clone();
            (c, Vec::new(), unit)
        };
        let applicant = Applicant {
            kind: ApplicantKind::Citizen,
            citizen_id: Some(citizen.citizen_id),
            tax_code: None,
            full_name: citizen.full_name,
            date_of_birth: Some(citizen.date_of_birth),
            contact,
            residence_unit_code: Some(citizen.residence_unit_code),
        };
        (applicant, parcels, jurisdiction)
    }

    /// A submission with one defect.
    pub fn defective(&mut self, submitted_at: i64, defect: Defect) -> DossierSubmitted {
        let mut s = self.valid(submitted_at);
        match defect {
            Defect::MissingDocument => {
                s.dossier.documents.pop();
            }
            Defect::BadCitizenId => s.dossier.applicant.citizen_id = Some("0220900012".to_owned()),
            Defect::UnknownProcedure => s.dossier.procedure_code = "9.999999".to_owned(),
            Defect::InactiveProcedure => {
                if let Some(p) = self.inactive.first() {
                    s.dossier.procedure_code = p.code.clone();
                }
            }
            Defect::UnknownReceivingUnit => s.dossier.receiving_unit_code = "99999".to_owned(),
            Defect::BirthDateTypo => {
                if let Some(d) = s.dossier.applicant.date_of_birth.as_mut() {
                    *d += 1;
                }
            }
        }
        s
    }

    pub fn reference(&self) -> &Reference {
        self.reference
    }
}

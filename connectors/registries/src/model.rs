//! What the registries know.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

/// A person in the national population database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citizen {
    /// 12-digit personal identification number.
    pub citizen_id: String,
    pub full_name: String,
    /// Days since 1970-01-01.
    pub date_of_birth: i32,
    pub sex: Sex,
    /// 5-digit 2025 unit code of permanent residence.
    pub residence_unit_code: String,
    pub deceased: bool,
}

/// A land parcel in the land database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parcel {
    pub unit_code: String,
    pub map_sheet: i32,
    pub parcel_number: i32,
    /// Citizen IDs of the land-use right holders.
    pub owners: Vec<String>,
    pub area_m2: f64,
    /// Land-use type code (ODT urban residential, ONT rural residential, CLN perennial
    /// crops, LUC rice, …).
    pub land_use: String,
    /// Registered restrictions: MORTGAGE, DISPUTE, SEIZURE.
    pub encumbrances: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusinessStatus {
    Active,
    Suspended,
    Dissolved,
}

impl BusinessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessStatus::Active => "active",
            BusinessStatus::Suspended => "suspended",
            BusinessStatus::Dissolved => "dissolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(BusinessStatus::Active),
            "suspended" => Some(BusinessStatus::Suspended),
            "dissolved" => Some(BusinessStatus::Dissolved),
            _ => None,
        }
    }
}

/// An enterprise or household business in the business registration database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Business {
    /// 10-digit tax code (with check digit).
    pub tax_code: String,
    pub name: String,
    pub status: BusinessStatus,
    pub legal_representative_citizen_id: String,
    pub head_office_unit_code: String,
}

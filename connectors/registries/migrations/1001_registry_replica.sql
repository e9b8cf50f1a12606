-- A replica of the national registries, for provinces that mirror them locally.
-- Versions start at 1001 so these migrations can share a database with motcua's store.
CREATE TABLE registry_citizens (
    citizen_id          TEXT PRIMARY KEY,
    full_name           TEXT NOT NULL,
    date_of_birth       INTEGER NOT NULL,      -- days since 1970-01-01
    sex                 TEXT NOT NULL CHECK (sex IN ('male', 'female')),
    residence_unit_code TEXT NOT NULL,
    deceased            BOOLEAN NOT NULL
);

CREATE TABLE registry_parcels (
    unit_code     TEXT NOT NULL,
    map_sheet     INTEGER NOT NULL,
    parcel_number INTEGER NOT NULL,
    owners        TEXT[] NOT NULL,
    area_m2       DOUBLE PRECISION NOT NULL,
    land_use      TEXT NOT NULL,
    encumbrances  TEXT[] NOT NULL,
    PRIMARY KEY (unit_code, map_sheet, parcel_number)
);

CREATE TABLE registry_businesses (
    tax_code                        TEXT PRIMARY KEY,
    name                            TEXT NOT NULL,
    status                          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'dissolved')),
    legal_representative_citizen_id TEXT NOT NULL,
    head_office_unit_code           TEXT NOT NULL
);

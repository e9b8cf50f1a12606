//! Embeds every `.avsc` under `avro/` and the id table, so the binary carries its schemas
//! and a user needs no checkout at run time.
use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).to_path_buf();
    let avro = dir.join("avro");
    println!("cargo:rerun-if-changed=avro");
    println!("cargo:rerun-if-changed=schema-ids.csv");
    let mut files: Vec<String> = fs::read_dir(&avro)
        .expect("schemas/avro exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    files.sort();
    let mut out = String::from("/// Every committed schema file: (path relative to schemas/, contents).\npub(crate) static SCHEMA_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        out.push_str(&format!(
            "    (\"avro/{f}\", include_str!(r\"{}\")),\n",
            avro.join(f).display()
        ));
    }
    out.push_str("];\n");
    out.push_str(&format!(
        "/// The committed id table (schema-ids.csv).\npub(crate) static SCHEMA_ID_TABLE: &str = include_str!(r\"{}\");\n",
        dir.join("schema-ids.csv").display()
    ));
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    fs::write(dest, out).expect("write embedded.rs");
}

//! Keys: the result stage's signing key, and operators' API keys for the status API.

use std::path::Path;

use anyhow::{Context, Result};

/// Makes a new Ed25519 signing key: the secret seed goes to `file` (created, mode 0600;
/// an existing file is never overwritten), the public key is returned (hex, to publish).
pub fn new_result_key(file: &Path) -> Result<String> {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    write_secret(file, &hex).with_context(|| format!("cannot write {}", file.display()))?;
    let signer = motcua_result::Signer25519::from_hex_seed(&hex, "").map_err(anyhow::Error::msg)?;
    Ok(signer.public_key_hex())
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// An operator's role in the status API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    /// Every unit of the deployment.
    Province,
    /// One unit.
    Unit,
}

/// Makes an operator's API key and appends its digest to the key file `file` (created
/// with mode 0600 if missing). Returns the key: it is shown once and never stored.
pub fn new_api_key(file: &Path, id: &str, role: ApiRole, unit: Option<&str>) -> Result<String> {
    let key = motcua_security::access::new_api_key();
    let entry = match (role, unit) {
        (ApiRole::Province, None) => format!(
            "\n[[key]]\nid = {id:?}\nrole = \"province\"\ndigest = \"{}\"\n",
            motcua_security::access::api_key_digest(&key)
        ),
        (ApiRole::Unit, Some(u)) => format!(
            "\n[[key]]\nid = {id:?}\nrole = \"unit\"\nunit = {u:?}\ndigest = \"{}\"\n",
            motcua_security::access::api_key_digest(&key)
        ),
        (ApiRole::Province, Some(_)) => anyhow::bail!("a province key has no unit (leave out --unit)"),
        (ApiRole::Unit, None) => anyhow::bail!("a unit key needs --unit <unit code>"),
    };
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    // The file must stay loadable: check it with the new entry before writing anything.
    motcua_track::access::ApiKeys::parse(&format!("{existing}{entry}"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.write_all(entry.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(key)
}

//! Keys: the result stage's signing key, and operators' API keys for the status API.

use std::path::Path;

use anyhow::{Context, Result};

/// Makes a new Ed25519 signing key: the secret seed goes to `file` (created, mode 0600;
/// an existing file is never overwritten), the public key is returned (hex, to publish).
pub fn new_result_key(file: &Path) -> Result<String> {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let hex = hex::encode(seed);
    write_secret(file, &hex).with_context(|| format!("cannot write {}", file.display()))?;
    let signer = motcua_result::Signer25519::from_hex_seed(&hex, "").map_err(anyhow::Error::msg)?;
    Ok(signer.public_key_hex())
}

/// Writes a secret readable by its owner only (mode 0600), never over an existing file.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
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

/// Adds the public half of the signing key in `seed_file` to the JWK Set `jwks_file`
/// (created if missing) as key `kid`, valid from `not_before` until `expires` (seconds
/// since the epoch, either open). The file is replaced atomically, so the status API
/// never serves half a file.
pub fn publish_result_key(
    seed_file: &Path,
    jwks_file: &Path,
    kid: &str,
    not_before: Option<i64>,
    expires: Option<i64>,
) -> Result<motcua_result::Jwk> {
    if kid.is_empty() {
        anyhow::bail!("a published key needs a key id (--kid)");
    }
    if let (Some(f), Some(u)) = (not_before, expires) {
        if f >= u {
            anyhow::bail!("--not-before must be before --expires");
        }
    }
    let seed = std::fs::read_to_string(seed_file).with_context(|| format!("cannot read {}", seed_file.display()))?;
    let signer = motcua_result::Signer25519::from_hex_seed(&seed, kid)
        .map_err(|e| anyhow::anyhow!("{}: {e}", seed_file.display()))?;
    let mut set = read_jwks_to_extend(jwks_file)?;
    if set.key(kid).is_some() {
        anyhow::bail!(
            "{} already has a key {kid:?}: key ids are never reused",
            jwks_file.display()
        );
    }
    let jwk = motcua_result::Jwk::ed25519(&signer.public_key(), kid, not_before, expires);
    set.keys.push(jwk.clone());
    write_jwks(jwks_file, &set)?;
    Ok(jwk)
}

/// Ends the validity of key `kid` at `at` (seconds since the epoch): results it signed
/// before stay verifiable, nothing it signs later is (rotation, or a key compromised).
pub fn expire_result_key(jwks_file: &Path, kid: &str, at: i64) -> Result<()> {
    let mut set = read_jwks(jwks_file)?;
    let key = set
        .keys
        .iter_mut()
        .find(|k| k.kid == kid)
        .with_context(|| format!("{} has no key {kid:?}", jwks_file.display()))?;
    if key.nbf.is_some_and(|f| f >= at) {
        anyhow::bail!("key {kid:?} is not valid before {at}: it would never have been valid");
    }
    key.exp = Some(key.exp.map_or(at, |e| e.min(at)));
    write_jwks(jwks_file, &set)
}

/// Reads a JWK Set file, checked (a configured file that is missing is an error).
pub fn read_jwks(path: &Path) -> Result<motcua_result::Jwks> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    motcua_result::Jwks::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The JWK Set a key is being published in: empty when the file does not exist yet.
pub fn read_jwks_to_extend(path: &Path) -> Result<motcua_result::Jwks> {
    if path.exists() {
        read_jwks(path)
    } else {
        Ok(motcua_result::Jwks::default())
    }
}

fn write_jwks(path: &Path, set: &motcua_result::Jwks) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, set.to_json() + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

//! Signing keys of the result stage.

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

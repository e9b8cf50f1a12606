//! Publishing submissions (what a portal does) and generating test dossiers.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use motcua_reference::civil::now_ms;
use motcua_reference::Reference;
use motcua_schemas::{Codec, DossierSubmitted};
use motcua_simulators::portal::{Defect, Generator};
use motcua_simulators::publisher::Publisher;
use rand::{Rng, SeedableRng};

use crate::portal_json::PortalDossier;
use motcua_wiring::Config;

pub(crate) async fn publish_file(cfg: &Config, file: &Path, dry_run: bool) -> Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let codec = if dry_run {
        Codec::embedded()?
    } else {
        motcua_wiring::schemas::codec_once(cfg).await?
    };
    let mut publisher = if dry_run {
        None
    } else {
        Some(Publisher::new(&cfg.kafka, codec.clone())?)
    };
    let (mut ok, mut refused) = (0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let now = now_ms();
        let event: Result<DossierSubmitted, String> = serde_json::from_str::<PortalDossier>(&line)
            .map_err(|e| e.to_string())
            .and_then(|d| d.into_event(now));
        match event {
            Ok(e) => {
                // Encoding also checks the event against the Avro schema.
                codec.encode(&e).with_context(|| format!("line {}", n + 1))?;
                if let Some(p) = publisher.as_mut() {
                    p.send(&e).await?;
                }
                ok += 1;
            }
            Err(e) => {
                refused += 1;
                eprintln!("line {}: {e}", n + 1);
            }
        }
    }
    if let Some(p) = publisher.as_mut() {
        p.flush().await?;
    }
    let verb = if dry_run { "valid" } else { "published" };
    println!("{ok} {verb}, {refused} refused");
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn generate(count: u64, seed: u64, province: &str, defect_rate: f64, world_citizens: u64) -> Result<()> {
    if !(0.0..=1.0).contains(&defect_rate) {
        bail!("--defect-rate {defect_rate} must be between 0 and 1");
    }
    let reference = Reference::embedded()?;
    let mut g = Generator::new(&reference, province, seed)
        .with_context(|| format!("province '{province}' is not one of the 34 province codes (e.g. 22, 01, 79)"))?;
    let world = (world_citizens > 0)
        .then(|| motcua_simulators::world::World::for_province(&reference.units, province, seed, world_citizens))
        .flatten();
    if let Some(w) = &world {
        g = g.with_world(w);
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0xdefec7);
    let start = now_ms();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for i in 0..count {
        let at = start + i as i64 * 1_000;
        let s = if rng.gen_bool(defect_rate) {
            g.defective(at, Defect::ALL[rng.gen_range(0..Defect::ALL.len())])
        } else {
            g.valid(at)
        };
        serde_json::to_writer(&mut out, &PortalDossier::from_event(&s))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

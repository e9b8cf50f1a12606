//! Publishing submissions (what a portal does) and generating test dossiers.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use motcua_intake::generate::{Defect, Generator};
use motcua_kafka::KafkaConfig;
pub(crate) use motcua_reference::civil::now_ms;
use motcua_reference::Reference;
use motcua_schemas::{Codec, DossierSubmitted, Event};
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::Config;
use crate::portal_json::PortalDossier;

/// An idempotent producer of Avro events, as a portal would run it.
pub(crate) struct Publisher {
    producer: FutureProducer,
    codec: Codec,
    kafka: KafkaConfig,
    pending: Vec<DeliveryFuture>,
}

impl Publisher {
    pub(crate) fn new(kafka: &KafkaConfig, codec: Codec) -> Result<Self> {
        let producer: FutureProducer = kafka
            .producer_config("motcua-publisher")
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self {
            producer,
            codec,
            kafka: kafka.clone(),
            pending: Vec::new(),
        })
    }

    pub(crate) async fn send<E: Event>(&mut self, event: &E) -> Result<()> {
        let payload = self.codec.encode(event)?;
        self.send_raw(
            &self.kafka.topic(E::TOPIC),
            event.key().as_bytes(),
            &payload,
            Some(event.event_id()),
        )
        .await
    }

    /// Enqueues bytes as they are (the demo uses it to publish malformed messages).
    pub(crate) async fn send_raw(
        &mut self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        event_id: Option<&str>,
    ) -> Result<()> {
        let mut headers = OwnedHeaders::new();
        if let Some(id) = event_id {
            headers = headers.insert(Header {
                key: "motcua-event-id",
                value: Some(id),
            });
        }
        loop {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            match self.producer.send_result(record) {
                Ok(f) => {
                    self.pending.push(f);
                    // Settle acknowledgements regularly so memory stays bounded.
                    if self.pending.len() >= 10_000 {
                        self.flush().await?;
                    }
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    self.flush().await?;
                }
                Err((e, _)) => bail!("cannot enqueue a message for {topic}: {e}"),
            }
        }
    }

    /// Waits until every enqueued message is acknowledged by the broker.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        for f in self.pending.drain(..) {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("the broker did not accept a message: {e}"),
                Err(_) => bail!("the producer was closed before a delivery report"),
            }
        }
        self.producer
            .flush(Duration::from_secs(30))
            .context("flushing the producer")?;
        Ok(())
    }
}

pub(crate) async fn publish_file(cfg: &Config, file: &Path, dry_run: bool) -> Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let codec = Codec::embedded()?;
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
        .then(|| motcua_registries::synthetic::World::for_province(&reference.units, province, seed, world_citizens))
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

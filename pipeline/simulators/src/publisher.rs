//! An idempotent producer of Avro events, as a portal would run it (`motcua publish`, the
//! demo's portals, load runs). Not a stage: stages never produce themselves, the runtime
//! does.

use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{Codec, Event};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// Enqueues events and settles their acknowledgements in bulk ([`Publisher::flush`]).
pub struct Publisher {
    producer: FutureProducer,
    codec: Codec,
    kafka: KafkaConfig,
    pending: Vec<DeliveryFuture>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig, codec: Codec) -> Result<Self> {
        let producer: FutureProducer = kafka.producer_config("motcua-publisher").create()?;
        Ok(Self {
            producer,
            codec,
            kafka: kafka.clone(),
            pending: Vec::new(),
        })
    }

    pub async fn send<E: Event>(&mut self, event: &E) -> Result<()> {
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
    pub async fn send_raw(&mut self, topic: &str, key: &[u8], payload: &[u8], event_id: Option<&str>) -> Result<()> {
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
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.flush().await?;
                }
                Err((e, _)) => return Err(Error::Kafka(e)),
            }
        }
    }

    /// Waits until every enqueued message is acknowledged by the broker.
    pub async fn flush(&mut self) -> Result<()> {
        for f in self.pending.drain(..) {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(Error::Kafka(e)),
                Err(_) => return Err(Error::Closed),
            }
        }
        self.producer.flush(Duration::from_secs(30))?;
        Ok(())
    }
}

/// Sends one event and waits for the broker's acknowledgement (for simulators that send
/// from many tasks at once, where a [`Publisher`]'s batching does not fit).
pub async fn deliver<E: Event>(producer: &FutureProducer, kafka: &KafkaConfig, codec: &Codec, event: &E) -> Result<()> {
    let payload = codec.encode(event)?;
    let topic = kafka.topic(E::TOPIC);
    let headers = OwnedHeaders::new().insert(Header {
        key: "motcua-event-id",
        value: Some(event.event_id()),
    });
    let record = FutureRecord::to(&topic)
        .key(event.key())
        .payload(&payload)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| Error::Kafka(e))?;
    Ok(())
}

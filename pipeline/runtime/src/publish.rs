//! Producing events outside a stage's consume loop (retriers, timers), with the same
//! framing and headers as the runtime, waiting for the broker's acknowledgement.

use std::time::Duration;

use futures::future::join_all;
use motcua_kafka::KafkaConfig;
use motcua_schemas::{AnyEvent, Codec};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::{Error, Result};

/// Sends `events` and returns once the broker acknowledged every one of them.
pub async fn deliver(producer: &FutureProducer, kafka: &KafkaConfig, codec: &Codec, events: &[AnyEvent]) -> Result<()> {
    let mut prepared = Vec::with_capacity(events.len());
    for e in events {
        let mut payload = Vec::with_capacity(512);
        e.encode(codec, &mut payload).map_err(|source| Error::Encode {
            stage: "publisher".to_owned(),
            source,
        })?;
        prepared.push((kafka.topic(e.topic()), payload, e));
    }
    let sends = prepared.iter().map(|(topic, payload, e)| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "motcua-event-id",
            value: Some(e.event_id()),
        });
        let record = FutureRecord::to(topic).key(e.key()).payload(payload).headers(headers);
        producer.send(record, Duration::from_secs(30))
    });
    for r in join_all(sends).await {
        r.map_err(|(e, _)| Error::Client(e))?;
    }
    Ok(())
}

//! The payment gateway simulator (`motcua gateway-sim`): reads bills from
//! `payment.requested` and confirms them after a random delay — some fail first and are
//! paid on a second attempt, some confirmations are sent twice, and random delays
//! reorder them — as real gateways do. A stand-in for the outside world.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use motcua_kafka::KafkaConfig;
use motcua_runtime::Shutdown;
use motcua_schemas::{Codec, PaymentConfirmed, PaymentOutcome, PaymentRequested};
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

#[derive(Debug, Clone)]
pub struct GatewaySimConfig {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Share of bills whose first payment attempt fails (then succeeds).
    pub failure_rate: f64,
    /// Share of successful confirmations sent twice.
    pub duplicate_rate: f64,
    pub seed: u64,
}

impl Default for GatewaySimConfig {
    fn default() -> Self {
        Self {
            min_delay_ms: 50,
            max_delay_ms: 2_000,
            failure_rate: 0.05,
            duplicate_rate: 0.05,
            seed: 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct GatewayStats {
    pub bills: AtomicU64,
    pub confirmations: AtomicU64,
    pub failures: AtomicU64,
    pub duplicates: AtomicU64,
}

/// Runs until `shutdown`. Returns the counts.
pub async fn run(
    kafka: KafkaConfig,
    codec: Codec,
    cfg: GatewaySimConfig,
    mut shutdown: Shutdown,
) -> Result<Arc<GatewayStats>, rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = kafka
        // The group of the gateway's principal (deploy/kafka/acls.sh grants motcua-gateway).
        .consumer_config(&kafka.group("gateway"), "motcua-gateway-sim")
        .create()?;
    consumer.subscribe(&[&kafka.topic(motcua_schemas::Topic::PaymentRequested)])?;
    let producer: Arc<FutureProducer> = Arc::new(kafka.producer_config("motcua-gateway-sim").create()?);
    let stats = Arc::new(GatewayStats::default());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(cfg.seed);
    loop {
        let m = tokio::select! {
            _ = shutdown.wait() => return Ok(stats),
            m = consumer.recv() => m,
        };
        // A broker lost for a while is reported here and retried by librdkafka: a real
        // gateway waits for its brokers rather than stopping.
        let Ok(m) = m else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Some(bill) = m.payload().and_then(|p| codec.decode::<PaymentRequested>(p).ok()) else {
            continue;
        };
        stats.bills.fetch_add(1, Ordering::Relaxed);
        let fails_first = rng.gen_bool(cfg.failure_rate);
        let twice = rng.gen_bool(cfg.duplicate_rate);
        let range = cfg.min_delay_ms..=cfg.max_delay_ms.max(cfg.min_delay_ms);
        let mut delay = || Duration::from_millis(rng.gen_range(range.clone()));
        let (d1, d2, d3) = (delay(), delay(), delay());
        let (producer, kafka, codec, stats) = (producer.clone(), kafka.clone(), codec.clone(), stats.clone());
        tokio::spawn(async move {
            let confirm = |n: u32, outcome: PaymentOutcome| PaymentConfirmed {
                event_id: motcua_schemas::derived_event_id(&bill.bill_reference, "gateway-sim", &format!("{n}")),
                bill_reference: bill.bill_reference.clone(),
                gateway: "gateway-sim".into(),
                gateway_transaction_id: format!("TX-{}-{n}", bill.bill_reference),
                amount_vnd: bill.amount_vnd,
                outcome,
                failure_reason: (outcome == PaymentOutcome::Failed).then(|| "thẻ bị từ chối".to_owned()),
                confirmed_at: motcua_reference::civil::now_ms(),
            };
            let send = |e: PaymentConfirmed| {
                let (producer, kafka, codec, stats) = (producer.clone(), kafka.clone(), codec.clone(), stats.clone());
                async move {
                    if crate::publisher::deliver(&producer, &kafka, &codec, &e).await.is_ok() {
                        stats.confirmations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            tokio::time::sleep(d1).await;
            let paying_attempt = if fails_first {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                send(confirm(1, PaymentOutcome::Failed)).await;
                tokio::time::sleep(d2).await;
                2
            } else {
                1
            };
            send(confirm(paying_attempt, PaymentOutcome::Succeeded)).await;
            if twice {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d3).await;
                // The same transaction reported again, with a new confirmation time.
                send(confirm(paying_attempt, PaymentOutcome::Succeeded)).await;
            }
        });
    }
}

//! What the load harnesses share: a process's CPU time and peak memory from /proc, one
//! line of measurements from a child process, and the hand-written rdkafka loop every
//! comparison starts from.

use std::time::{Duration, Instant};

use motcua_kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

/// Linux's USER_HZ: /proc reports CPU time in these ticks.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system, every thread) process `pid` has used so far (`None`: this
/// process), or `None` when it is gone.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (in parentheses, it may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Peak resident memory (VmHWM) of process `pid` (`None`: this process), in KiB.
pub fn peak_rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What a measured run used: messages handled, CPU and wall seconds, peak RSS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub messages: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub rss_kib: u64,
}

impl Measured {
    /// One line on stdout, for the harness that started this child.
    pub fn print(&self) {
        println!(
            "measured messages={} cpu_s={} wall_s={} rss_kib={}",
            self.messages, self.cpu_s, self.wall_s, self.rss_kib
        );
    }

    /// The line [`Measured::print`] wrote (a Python child writes the same).
    pub fn parse(out: &str) -> Option<Self> {
        let line = out.lines().find(|l| l.starts_with("measured "))?;
        let field = |k: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
        };
        Some(Self {
            messages: field("messages")?.parse().ok()?,
            cpu_s: field("cpu_s")?.parse().ok()?,
            wall_s: field("wall_s")?.parse().ok()?,
            rss_kib: field("rss_kib")?.parse().ok()?,
        })
    }

    pub fn cpu_us_per_message(&self) -> f64 {
        self.cpu_s * 1e6 / self.messages.max(1) as f64
    }

    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.wall_s.max(1e-9)
    }
}

/// CPU and wall clock of this process at a point, to measure from.
#[derive(Debug)]
pub struct Start {
    cpu_s: f64,
    at: Instant,
}

impl Start {
    pub fn now() -> Self {
        Self {
            cpu_s: cpu_seconds(None).unwrap_or(0.0),
            at: Instant::now(),
        }
    }

    pub fn until_now(&self, messages: u64) -> Measured {
        Measured {
            messages,
            cpu_s: cpu_seconds(None).unwrap_or(0.0) - self.cpu_s,
            wall_s: self.at.elapsed().as_secs_f64(),
            rss_kib: peak_rss_kib(None),
        }
    }
}

/// Sends `record`, waiting while the producer's local queue is full.
pub fn send(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'_, [u8], [u8]>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// What a hand-written loop does to each message: `None` copies the bytes, else the
/// function writes the output into the buffer.
pub type Transform<'a> = Option<&'a mut dyn FnMut(&[u8], &mut Vec<u8>)>;

/// A hand-written loop: poll, (transform,) send, store the offset; flush and commit at
/// the end. Offsets are stored as consumed, not as delivered: cheaper than the runtime's
/// guarantee, which is the point of a floor. Measured from the first message received.
pub fn raw_loop(
    kafka: &KafkaConfig,
    group: &str,
    inputs: &[&str],
    output: &str,
    messages: u64,
    mut transform: Transform<'_>,
) -> Measured {
    let consumer: BaseConsumer = kafka.consumer_config(group, group).create().expect("consumer");
    let producer: ThreadedProducer<DefaultProducerContext> = kafka.producer_config(group).create().expect("producer");
    consumer.subscribe(inputs).expect("subscribe");
    let mut start = None;
    let mut seen = 0;
    let mut encoded = Vec::with_capacity(4096);
    while seen < messages {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("consume");
        start.get_or_insert_with(Start::now);
        let payload = m.payload().unwrap_or_default();
        let payload = match transform.as_mut() {
            Some(f) => {
                encoded.clear();
                f(payload, &mut encoded);
                &encoded[..]
            }
            None => payload,
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(output).payload(payload);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        send(&producer, record);
        consumer.store_offset_from_message(&m).expect("store offset");
        seen += 1;
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    start.expect("at least one message").until_now(seen)
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

//! Logs to stderr (text or JSON), and — when the standard OpenTelemetry variables name an
//! endpoint — each message's processing span to an OTLP collector over HTTP/protobuf:
//!
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, e.g. `http://collector:4318/v1/traces`)
//!   or `OTEL_EXPORTER_OTLP_ENDPOINT` (the base: `/v1/traces` is added);
//! - `OTEL_SERVICE_NAME` (default `motcua-<stage>` for `motcua run <stage>`, else `motcua`),
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` (e.g. an API key),
//!   `OTEL_EXPORTER_OTLP_TIMEOUT`, as the OpenTelemetry specification defines them;
//! - `OTEL_SDK_DISABLED=true` turns export off.
//!
//! The spans are the runtime's (`motcua_runtime::telemetry::PROCESS_SPAN_TARGET`): one per
//! message and stage, in the trace of its dossier, named by stage and topic, with the
//! dossier's Kafka coordinates and the outcome — never the message's content.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::LogFormat;

/// Flushes and stops the span exporter when dropped (at the end of `main`).
#[must_use]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: the last spans could not be exported: {e}");
            }
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the OpenTelemetry variables ask for span export; an endpoint that is not an
/// http(s) URL is refused (the exporter would otherwise drop every span quietly).
fn otlp_wanted() -> Result<bool> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let mut wanted = false;
    for name in ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        let Some(v) = env(name) else { continue };
        let url = reqwest::Url::parse(&v).ok();
        if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
            anyhow::bail!("{name} = '{v}' is not an http:// or https:// URL (e.g. http://collector:4318)");
        }
        wanted = true;
    }
    Ok(wanted)
}

pub(crate) fn init(format: LogFormat, default: &str, service: &str) -> Result<Telemetry> {
    // A span per message would be formatted into every log line's context for nothing:
    // the processing spans are for the exporter only.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default))
        .add_directive(
            format!("{}=off", motcua_runtime::telemetry::PROCESS_SPAN_TARGET)
                .parse()
                .context("the log filter")?,
        );
    // Colour codes only for a person at a terminal: log files and collectors get plain
    // text (and the worker does not format escape sequences for every span).
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let provider = if otlp_wanted()? {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("the OTLP span exporter (OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT)")?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service.to_owned());
        }
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("motcua"))
            .with_filter(
                Targets::new().with_target(motcua_runtime::telemetry::PROCESS_SPAN_TARGET, tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if provider.is_some() {
        tracing::info!(service, "exporting each message's processing span over OTLP");
    }
    Ok(Telemetry { provider })
}

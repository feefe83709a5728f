//! Logging: text or JSON lines to stdout or stderr, filtered by `RUST_LOG`, and the optional
//! OpenTelemetry export of the spans (`--features otlp`).

use std::io::IsTerminal;

use crate::cli::LogFormat;

/// Logs go to stdout, except for commands whose stdout is data (`sql`, `export`). With
/// `--otlp-endpoint` (built with `--features otlp`) the spans are also exported over OTLP; the
/// returned guard flushes them at exit.
pub(crate) fn init_logging(
    to_stderr: bool,
    format: LogFormat,
    otlp: Option<&str>,
) -> anyhow::Result<Option<otlp::Guard>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, ansi) = if to_stderr {
        (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal())
    } else {
        (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal())
    };
    let (json, pretty) = match format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
            None,
        ),
        LogFormat::Pretty => (None, Some(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer))),
    };
    let (otel, guard) = match otlp {
        Some(endpoint) => {
            let (layer, guard) = otlp::layer(endpoint)?;
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    // The OTLP layer sits right on the registry; the filter still decides for every layer.
    tracing_subscriber::registry().with(otel).with(filter).with(json).with(pretty).init();
    Ok(guard)
}

/// The optional span exporter, boxed so both builds give the subscriber one type.
type OtelLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// OpenTelemetry export of the spans, compiled in with `--features otlp`.
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;

    /// Flushes and shuts the exporter down when dropped.
    pub(crate) struct Guard(opentelemetry_sdk::trace::SdkTracerProvider);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    /// A tracing layer exporting spans to the OTLP/HTTP collector at `endpoint`
    /// (e.g. `http://127.0.0.1:4318/v1/traces`).
    pub(crate) fn layer(endpoint: &str) -> anyhow::Result<(super::OtelLayer, Guard)> {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint).build()?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("blockstreamer").build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("blockstreamer");
        Ok((Box::new(tracing_opentelemetry::layer().with_tracer(tracer)), Guard(provider)))
    }
}

/// Without the `otlp` feature the flag is refused with the reason.
#[cfg(not(feature = "otlp"))]
mod otlp {
    /// Nothing to flush.
    pub(crate) struct Guard;

    pub(crate) fn layer(_endpoint: &str) -> anyhow::Result<(super::OtelLayer, Guard)> {
        anyhow::bail!("--otlp-endpoint needs a build with the otlp feature: cargo build --release --features otlp")
    }
}

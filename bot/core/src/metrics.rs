//! The counters `/metrics` shows, in one process-wide registry as every
//! Prometheus client keeps them. The session counts what the engine decided
//! (messages, diagnoses, outcomes, ends); front-ends count what they sent and
//! how their platform answered; the server counts flow reloads.

use std::sync::OnceLock;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::case::{Outcome, OutcomeRecord};

/// Every metric fixbot exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Updates handled, per platform.
    pub messages_received: IntCounterVec,
    /// Messages sent, per platform.
    pub messages_sent: IntCounterVec,
    /// Messages that opened a case, per symptom diagnosed (`none` when nothing fit).
    pub diagnoses: IntCounterVec,
    /// Clarifying questions asked because several symptoms fit.
    pub clarifying_questions: IntCounter,
    /// How steps ended, per symptom, step (its flow and id; empty for a
    /// case that ended before any step) and outcome: summed over the steps,
    /// the figures per symptom; per step, where cases are fixed and where
    /// people give up, as `fixbot stats` shows them.
    pub step_outcomes: IntCounterVec,
    /// Cases that ended, per symptom and end (`resolved`, `escalated`, `abandoned`).
    pub cases_ended: IntCounterVec,
    /// Seconds from an update's arrival to its last reply sent, per platform.
    pub reply_seconds: HistogramVec,
    /// Platform API calls that failed, per platform and kind
    /// (`rate_limited`, `server`, `network`, `refused`).
    pub api_errors: IntCounterVec,
    /// Platform API calls made again after a failure, per platform.
    pub api_retries: IntCounterVec,
    /// Messages dropped because their sender was flooding, per platform.
    pub rate_limited: IntCounterVec,
    /// Store operations that failed.
    pub store_errors: IntCounter,
    /// Flow reloads, per result (`ok`, `refused`).
    pub flow_reloads: IntCounterVec,
    /// Flows in use now.
    pub flows_loaded: IntGauge,
    /// Cases handed to a person, per desk and result (`opened`, `unreachable`).
    pub handovers: IntCounterVec,
    /// Messages relayed between a user and staff, per direction (`to_staff`, `to_user`).
    pub staff_relays: IntCounterVec,
    /// Webhook desk deliveries, per result (`delivered`, `retried`, `failed`).
    pub webhook_posts: IntCounterVec,
}

/// The process's metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A counter family; the names and label sets are literals, so creating and
/// registering them cannot fail.
fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry.register(Box::new(family.clone())).expect("a metric registered once");
    family
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("a valid metric definition");
            registry.register(Box::new(counter.clone())).expect("a metric registered once");
            counter
        };
        let clarifying_questions =
            counter("fixbot_clarifying_questions_total", "Clarifying questions asked because several symptoms fit.");
        let store_errors = counter("fixbot_store_errors_total", "Store operations that failed.");
        let flows_loaded =
            IntGauge::new("fixbot_flows_loaded", "Flows in use now.").expect("a valid metric definition");
        registry.register(Box::new(flows_loaded.clone())).expect("a metric registered once");
        // From 5 ms to about 40 s: a reply waits out per-chat rate limits.
        let buckets = prometheus::exponential_buckets(0.005, 2.0, 14).expect("valid buckets");
        let reply_seconds = HistogramVec::new(
            HistogramOpts::new(
                "fixbot_reply_duration_seconds",
                "Seconds from an update's arrival to its last reply sent.",
            )
            .buckets(buckets),
            &["platform"],
        )
        .expect("a valid metric definition");
        registry.register(Box::new(reply_seconds.clone())).expect("a metric registered once");
        let build = IntGauge::with_opts(
            Opts::new("fixbot_build_info", "The running fixbot's version.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("a valid metric definition");
        build.set(1);
        registry.register(Box::new(build)).expect("a metric registered once");
        Metrics {
            messages_received: counters(&registry, "fixbot_messages_received_total", "Updates handled.", &["platform"]),
            messages_sent: counters(&registry, "fixbot_messages_sent_total", "Messages sent.", &["platform"]),
            diagnoses: counters(
                &registry,
                "fixbot_diagnoses_total",
                "Messages that opened a case, by the symptom diagnosed (none when nothing fit).",
                &["symptom"],
            ),
            clarifying_questions,
            step_outcomes: counters(
                &registry,
                "fixbot_step_outcomes_total",
                "How steps ended, by the symptom that started the case, the step (flow and id) and outcome.",
                &["symptom", "flow", "step", "outcome"],
            ),
            cases_ended: counters(
                &registry,
                "fixbot_cases_ended_total",
                "Cases that ended: resolved, escalated or abandoned.",
                &["symptom", "end"],
            ),
            reply_seconds,
            api_errors: counters(
                &registry,
                "fixbot_platform_api_errors_total",
                "Platform API calls that failed, by kind: rate_limited, server, network, refused.",
                &["platform", "kind"],
            ),
            api_retries: counters(
                &registry,
                "fixbot_platform_api_retries_total",
                "Platform API calls made again after a failure.",
                &["platform"],
            ),
            rate_limited: counters(
                &registry,
                "fixbot_rate_limited_total",
                "Messages dropped because their sender was flooding.",
                &["platform"],
            ),
            store_errors,
            flow_reloads: counters(&registry, "fixbot_flow_reloads_total", "Flow reloads, by result.", &["result"]),
            flows_loaded,
            handovers: counters(
                &registry,
                "fixbot_handovers_total",
                "Cases handed to a person, by desk and result: opened or unreachable.",
                &["desk", "result"],
            ),
            staff_relays: counters(
                &registry,
                "fixbot_staff_relays_total",
                "Messages relayed between a user and staff, by direction: to_staff or to_user.",
                &["direction"],
            ),
            webhook_posts: counters(
                &registry,
                "fixbot_staff_webhook_posts_total",
                "Webhook desk deliveries, by result: delivered, retried (a failed attempt tried again) or failed.",
                &["result"],
            ),
            registry,
        }
    }

    /// Counts the outcome records of one transition: every step outcome,
    /// and the end of the case where the outcome ends one.
    pub fn count_outcomes(&self, records: &[OutcomeRecord]) {
        for record in records {
            self.step_outcomes
                .with_label_values(&[
                    record.symptom.as_str(),
                    record.flow.as_str(),
                    record.step.as_str(),
                    record.outcome.as_str(),
                ])
                .inc();
            let end = match record.outcome {
                Outcome::Fixed => "resolved",
                Outcome::Escalated => "escalated",
                Outcome::Abandoned => "abandoned",
                Outcome::NotFixed | Outcome::Skipped => continue,
            };
            self.cases_ended.with_label_values(&[record.symptom.as_str(), end]).inc();
        }
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into memory fails only on a metric that breaks the format,
        // which the literal definitions above cannot.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_every_family() {
        let metrics = metrics();
        metrics.messages_received.with_label_values(&["test"]).inc();
        metrics.reply_seconds.with_label_values(&["test"]).observe(0.02);
        let text = metrics.render();
        assert!(text.contains("# TYPE fixbot_messages_received_total counter"), "{text}");
        assert!(text.contains("fixbot_messages_received_total{platform=\"test\"}"), "{text}");
        assert!(text.contains("fixbot_reply_duration_seconds_bucket{platform=\"test\",le=\"0.04\"} "), "{text}");
        assert!(text.contains("fixbot_build_info{version="), "{text}");
    }

    #[test]
    fn outcomes_are_counted_per_symptom_and_step_and_ends_per_symptom() {
        let metrics = metrics();
        let record = |step: &str, outcome| OutcomeRecord {
            case_id: 1,
            subject: 2,
            at: 3,
            symptom: "metrics_test".into(),
            flow: "metrics_test".into(),
            step: step.into(),
            outcome,
        };
        metrics.count_outcomes(&[record("one", Outcome::NotFixed), record("two", Outcome::Fixed)]);
        metrics.count_outcomes(&[record("two", Outcome::Abandoned)]);
        let step = |step: &str, outcome: &str| {
            metrics.step_outcomes.with_label_values(&["metrics_test", "metrics_test", step, outcome]).get()
        };
        assert_eq!((step("one", "not_fixed"), step("two", "fixed"), step("two", "abandoned")), (1, 1, 1));
        let ended = |end: &str| metrics.cases_ended.with_label_values(&["metrics_test", end]).get();
        assert_eq!((ended("resolved"), ended("abandoned"), ended("escalated")), (1, 1, 0));
    }
}

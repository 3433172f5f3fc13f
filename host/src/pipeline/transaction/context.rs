//! The transactional producer's callbacks: a failed delivery dooms the open
//! transaction, and a refusal is remembered for the record's next pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::refusals::{Refusals, TxnTicket};
use crate::kafka::producer::Trouble;
use crate::telemetry::Health;
use crate::telemetry::health::StallWatch;

/// The transactional producer's callbacks.
pub(super) struct TxnContext {
    pub(super) pipeline: Arc<str>,
    pub(super) health: Arc<Health>,
    pub(super) stall: Arc<StallWatch>,
    /// A delivery failed: the open transaction can only be aborted.
    pub(super) doomed: Arc<AtomicBool>,
    pub(super) refusals: Arc<Refusals>,
}

impl ClientContext for TxnContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                self.health
                    .broker_trouble(format!("producer of {}: {reason}", self.pipeline));
            }
            Some(RDKafkaErrorCode::Fatal) => {
                // Handled where the transaction is committed: the producer is replaced.
                tracing::debug!(pipeline = %self.pipeline, reason, "transactional producer: fatal error");
                self.doomed.store(true, Ordering::SeqCst);
            }
            _ => tracing::warn!(pipeline = %self.pipeline, %error, reason, "producer error"),
        }
    }
}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = Box<TxnTicket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<TxnTicket>) {
        use rdkafka::message::Message;
        let (error, message) = match result {
            Ok(message) => {
                self.health.broker_ok();
                self.health.allowed(message.topic());
                self.stall.acked();
                if let Some(metrics) = &ticket.metrics {
                    metrics.delivered();
                }
                if let Some(span) = &ticket.span {
                    span.delivered();
                }
                return;
            }
            Err(failed) => failed,
        };
        self.doomed.store(true, Ordering::SeqCst);
        let code = error.rdkafka_error_code();
        if matches!(
            code,
            Some(
                RDKafkaErrorCode::PurgeQueue
                    | RDKafkaErrorCode::PurgeInflight
                    | RDKafkaErrorCode::State
            )
        ) {
            // A consequence of an abort, not a verdict on the record.
            return;
        }
        if let Some(metrics) = &ticket.metrics {
            metrics.failed();
        }
        let topic = message.topic();
        let trouble = Trouble::of(code);
        if let Some(span) = &ticket.span {
            span.refused(&error.to_string());
        }
        if trouble != Trouble::Broker {
            self.stall.answered();
        }
        match trouble {
            Trouble::Refused => {
                let refusal = ticket.refusal(topic, &error.to_string(), false);
                self.refusals
                    .learn(ticket.partition, ticket.offset, refusal);
            }
            Trouble::NotAllowed => self.health.not_allowed(topic, &error.to_string()),
            Trouble::Broker => self
                .health
                .broker_trouble(format!("delivery to {topic} failed: {error}")),
        }
    }
}

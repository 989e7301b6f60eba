//! The outbound side of Remote Process Invocation: the engine that drains the durable delivery
//! queue (Outbound Messages in Salesforce's SOAP format, signed JSON webhooks) with retries,
//! expiry into a dead-letter queue and per-endpoint circuit breakers.
//!
//! Notifications are queued by write jobs (`store::WriteTx::enqueue_delivery`), so they commit
//! with the change that caused them. The engine marks one delivered only after its receiver
//! acknowledged it; every failure ends in a retry or in the dead-letter queue.

mod engine;
pub mod outbound;
pub mod policy;
mod send;
pub mod webhook;

use std::sync::Arc;

pub use engine::Engine;
pub use policy::{Breaker, Policy, MAX_EXPIRY};

/// Queue kind of Outbound Messages.
pub const KIND_OUTBOUND: &str = "outbound";
/// Queue kind of webhooks.
pub const KIND_WEBHOOK: &str = "webhook";
/// Queue kind of after-save flow actions run inside the org (create or update records, publish
/// platform events): the catalog runs them, and marks them delivered in the same transaction.
pub const KIND_FLOW: &str = "flow";

/// Why running a local action failed.
#[derive(Debug, Clone)]
pub struct LocalFailure {
    /// What went wrong.
    pub reason: String,
    /// Retrying cannot help: straight to the dead-letter queue.
    pub permanent: bool,
}

/// An Outbound Message definition: which record fields go to which endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundDef {
    /// Its unique name.
    pub name: String,
    /// Its id (`04k…`, 18 characters), sent as `ActionId`.
    pub id: String,
    /// The object whose records it sends.
    pub object: String,
    /// The receiver's URL.
    pub endpoint: String,
    /// The fields sent (the `Id` always is).
    pub fields: Vec<String>,
    /// The API version of the call-back URLs.
    pub api_version: String,
    /// Send a session id of this user, so the receiver can call back as them.
    pub session_user: Option<String>,
}

/// A webhook definition.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDef {
    /// Its unique name.
    pub name: String,
    /// The receiver's URL.
    pub url: String,
    /// The HMAC-SHA256 signing key, if requests are signed.
    pub secret: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The most requests written at once on a connection, to a receiver that has answered
    /// pipelined requests (HTTP/1.1 pipelining; 1 = always one at a time).
    pub pipeline: usize,
}

/// The most requests one webhook may write at once on a connection.
pub const MAX_PIPELINE: usize = 16;
/// What a webhook writes at once at most when its definition does not say.
pub const DEFAULT_PIPELINE: usize = 8;

/// Where the engine finds the current definitions of the actions notifications name.
pub trait Catalog: Send + Sync + 'static {
    /// The Outbound Message named `name`.
    fn outbound(&self, name: &str) -> Option<Arc<OutboundDef>>;
    /// The webhook named `name`.
    fn webhook(&self, name: &str) -> Option<Arc<WebhookDef>>;
    /// Runs a queued action of kind [`KIND_FLOW`] against `org`, settling `row` as delivered in
    /// the transaction that applies it (so it takes effect exactly once).
    fn run_local<'a>(
        &'a self,
        org: &'a Arc<service::Org>,
        row: &'a store::DeliveryRow,
    ) -> service::automation::BoxFuture<'a, Result<(), LocalFailure>> {
        let _ = (org, row);
        Box::pin(async {
            Err(LocalFailure {
                reason: "this server runs no flow actions".into(),
                permanent: true,
            })
        })
    }
}

/// The notification id of sequence `seq` (`04l…`, 18 characters).
pub fn notification_id(org: &service::Org, seq: u64) -> String {
    model::Id::new(model::KeyPrefix(*b"04l"), org.store().marker(), seq).to_18()
}

/// The sequence of a notification id, if it is one of this org's.
pub fn notification_seq(org: &service::Org, id: &str) -> Option<u64> {
    let id = model::Id::parse(id).ok()?;
    (id.prefix() == model::KeyPrefix(*b"04l"))
        .then(|| id.seq_in(org.store().marker()))
        .flatten()
}

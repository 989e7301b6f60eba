//! The delivery queue as the store keeps it: one row per outbound notification (Outbound
//! Message, webhook, asynchronous flow action) until its destination acknowledged it. Rows are
//! written by write jobs, so a notification commits together with the record change that caused
//! it (a transactional outbox); their sequence is the notification id, the same on every retry.

/// A notification's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (never tried, or failed and due again at `next_ms`).
    Queued,
    /// Given up on (expired or refused for good): in the dead-letter queue until requeued or
    /// purged.
    Dead,
}

impl DeliveryState {
    /// The number stored for the state.
    pub fn code(self) -> i64 {
        match self {
            DeliveryState::Queued => 0,
            DeliveryState::Dead => 1,
        }
    }

    /// The state stored as `code`.
    pub fn from_code(code: i64) -> DeliveryState {
        if code == 1 {
            DeliveryState::Dead
        } else {
            DeliveryState::Queued
        }
    }
}

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// What sends it (`outbound`, `webhook`, `action`).
    pub kind: String,
    /// Where it goes: notifications to one endpoint share its concurrency and circuit breaker.
    pub endpoint: String,
    /// The definition that produced it (an Outbound Message or flow action name); notifications
    /// of one action may travel in one message.
    pub action: String,
    /// The record it is about (an 18-character id), or empty.
    pub record: String,
    /// What the sender needs besides the record (JSON).
    pub payload: String,
    /// When it was queued (ms).
    pub created_ms: i64,
    /// When its first attempt is due (ms).
    pub next_ms: i64,
    /// When it expires into the dead-letter queue if still undelivered (ms).
    pub expires_ms: i64,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Its sequence: the notification id.
    pub seq: u64,
    /// As enqueued.
    pub new: NewDelivery,
    /// Queued or dead.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the last attempt ended (ms).
    pub last_ms: Option<i64>,
    /// Why the last attempt failed (or why it went to the dead-letter queue).
    pub last_error: Option<String>,
}

/// Which notifications [`crate::ReadTx::deliveries`] lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only queued notifications that failed at least once.
    pub failed: bool,
    /// Only this endpoint.
    pub endpoint: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Sequences above this one (paging).
    pub after: u64,
    /// At most this many (in sequence order).
    pub limit: usize,
}

/// How an attempt ended, as the queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledged: the notification leaves the queue.
    Delivered,
    /// Failed: try again at `next_ms`.
    Retry {
        /// When the next attempt is due (ms).
        next_ms: i64,
        /// Why it failed.
        error: String,
    },
    /// Failed for good: to the dead-letter queue.
    Dead {
        /// Why.
        error: String,
    },
    /// Expired without a new attempt: to the dead-letter queue, attempts unchanged.
    Expired {
        /// Why.
        error: String,
    },
    /// Not attempted (its endpoint's circuit is open): due again at `next_ms`, attempts unchanged.
    Defer {
        /// When it is due again (ms).
        next_ms: i64,
    },
}

/// Counts of the queue for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// The endpoint.
    pub endpoint: String,
    /// Queued and never failed.
    pub queued: u64,
    /// Queued after at least one failure.
    pub failing: u64,
    /// In the dead-letter queue.
    pub dead: u64,
    /// The oldest queued notification's creation time (ms).
    pub oldest_ms: Option<i64>,
}

/// A flow fault: a flow that failed on a record change (the change was refused).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultRow {
    /// Its sequence (0 when new).
    pub seq: u64,
    /// When it happened (ms).
    pub created_ms: i64,
    /// The flow.
    pub flow: String,
    /// The object.
    pub object: String,
    /// The record id, when it had one.
    pub record: String,
    /// `create`, `update`, `delete` or `invoke`.
    pub event: String,
    /// The user whose change triggered it (username).
    pub user: String,
    /// What went wrong.
    pub message: String,
}

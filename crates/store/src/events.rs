//! The event log as the store keeps it: one row per event (platform events, change events,
//! PushTopic notifications), numbered by one replay id sequence for the whole org. Replay ids
//! only grow and are never reused, so they are strictly increasing on every channel; events are
//! written by write jobs, so an event commits together with the record change it describes.

/// What kind of stream an event belongs to (channels select streams by name or by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A platform event (`/event/Name__e`).
    Platform,
    /// A change event (`/data/AccountChangeEvent`, and `/data/ChangeEvents` for every entity).
    Change,
    /// A PushTopic notification (`/topic/Name`).
    Topic,
}

impl EventKind {
    /// The number stored for the kind.
    pub fn code(self) -> i64 {
        match self {
            EventKind::Platform => 1,
            EventKind::Change => 2,
            EventKind::Topic => 3,
        }
    }

    /// The kind stored as `code`.
    pub fn from_code(code: i64) -> Option<EventKind> {
        match code {
            1 => Some(EventKind::Platform),
            2 => Some(EventKind::Change),
            3 => Some(EventKind::Topic),
            _ => None,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The stream: the event type (`Low_Ink__e`, `AccountChangeEvent`) or PushTopic name.
    pub stream: String,
    /// The stream's kind.
    pub kind: EventKind,
    /// When the event was published (ms).
    pub created_ms: i64,
    /// The event's UUID (`EventUuid`).
    pub uuid: String,
    /// Schema id of the payload's shape.
    pub schema_id: String,
    /// The payload as JSON text.
    pub payload: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Its replay id.
    pub replay_id: u64,
    /// The rest, as appended.
    pub event: NewEvent,
}

/// The newest committed event, as the writer announces it after each commit that added events
/// ([`crate::Store::event_tip`]).
#[derive(Debug, Clone, Default)]
pub struct EventTip {
    /// The replay id of the newest committed event.
    pub last: u64,
    /// Every event with a replay id above `after` (and at most `last`), when the writer had them
    /// at hand: the events of the commit that moved the tip, read back inside its transaction, so
    /// that waiting subscribers need not read the log for them. `None` when there were too many.
    pub fresh: Option<std::sync::Arc<[EventRow]>>,
    /// The tip before the commit: where `fresh` starts.
    pub after: u64,
}

/// Which events [`crate::ReadTx::events_after`] reads.
#[derive(Debug, Clone, Copy)]
pub enum EventSelect<'a> {
    /// One stream.
    Stream(&'a str),
    /// Every stream of a kind.
    Kind(EventKind),
}

/// The replay ids the log can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventBounds {
    /// Events up to and including this id were pruned (0: none ever were).
    pub pruned_through: u64,
    /// The last id ever given out (0: none yet).
    pub last: u64,
}

/// What one write job (one transaction) has said about record changes so far. The service keeps
/// the change-event header values the job's events share here, and may ask for a function to run
/// when the job ends with its changes kept (before they commit), to merge the job's events.
#[derive(Debug, Default)]
pub struct TxChanges {
    /// The `transactionKey` of the job's change events (empty until the first one).
    pub key: String,
    /// The job's `commitNumber`.
    pub commit_number: u64,
    /// The job's `commitTimestamp` (ms).
    pub commit_ms: i64,
    /// The last `sequenceNumber` given out.
    pub sequence: u32,
    /// Changes counted towards the overflow limit.
    pub counted: u64,
    /// Entities that got their `GAP_OVERFLOW` event.
    pub overflowed: Vec<String>,
    /// Replay id after which this job's change events start.
    pub first_after: u64,
    /// A digest of the last change event's mergeable content (0: none).
    pub last_digest: u64,
    /// True when two consecutive change events had the same digest: the end-of-job function
    /// has something to merge.
    pub mergeable: bool,
    /// True once the job wrote a PushTopic record (topics compiled inside it are tentative).
    pub topics_changed: bool,
    /// Run when the job ends and keeps its changes, before they commit.
    pub at_end: Option<fn(&mut dyn crate::WriteTx) -> crate::StoreResult<()>>,
}

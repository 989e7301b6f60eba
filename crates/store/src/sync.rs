//! Control tables of sync jobs: run history with counts and the per-row error table (cursors
//! are settings, written in the transaction that writes the rows they cover).

/// One run of a sync job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncRunRow {
    /// Its number (0 before it is recorded).
    pub id: u64,
    /// The job.
    pub job: String,
    /// When it started (ms).
    pub started_ms: i64,
    /// When it ended (ms), if it did.
    pub ended_ms: Option<i64>,
    /// `running`, `succeeded`, `failed` (a run that ended on an error) or `interrupted` (found
    /// running after a restart).
    pub status: String,
    /// Source rows read.
    pub read: u64,
    /// Rows the target accepted.
    pub written: u64,
    /// Rows the target refused (they are in the error table).
    pub failed: u64,
    /// The cursor the run started from.
    pub cursor_from: Option<String>,
    /// The cursor it committed last.
    pub cursor_to: Option<String>,
    /// Why it failed.
    pub message: Option<String>,
    /// A migration's validation report (JSON).
    pub report: Option<String>,
}

/// A source row the target refused.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncErrorRow {
    /// The job.
    pub job: String,
    /// The run that last failed it.
    pub run: u64,
    /// The row's key in the source.
    pub key: String,
    /// The target's error.
    pub error: String,
    /// The row as written to the target (JSON).
    pub payload: String,
    /// When it (last) failed (ms).
    pub created_ms: i64,
}

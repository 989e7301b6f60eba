//! Bulk API jobs as the store keeps them: one row per job (settings, state, progress cursor,
//! counters) and one row per processed chunk (where its rows lie in the uploaded file, and its
//! per-row results). A chunk's row and the job's new cursor are written in the same transaction
//! as the chunk's record writes, which is what makes processing resumable exactly once.

/// A job row. States, operations and settings are kept as their wire spellings (`InProgress`,
/// `upsert`, `COMMA`); the service layer gives them meaning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkJobRow {
    /// Row sequence (the job id's sequence part); ignored on insert.
    pub seq: u64,
    /// `V2Ingest`, `V2Query` or `Classic` (Bulk API 1.0).
    pub kind: String,
    /// The object's API name.
    pub object: String,
    /// `insert`, `update`, `upsert`, `delete`, `hardDelete`, `query`, `queryAll`.
    pub operation: String,
    /// Upsert key field.
    pub external_id: Option<String>,
    /// `Open`, `UploadComplete`, `InProgress`, `JobComplete`, `Failed`, `Aborted`.
    pub state: String,
    /// The creating user's sequence.
    pub created_by: u64,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// API version the job was created with (59 for 59.0).
    pub api_version: u32,
    /// `COMMA`, `TAB`, …
    pub column_delimiter: String,
    /// `LF` or `CRLF`.
    pub line_ending: String,
    /// `CSV` (Bulk 2.0); Bulk 1.0 also `XML`, `JSON`.
    pub content_type: String,
    /// Assignment rule id, when given.
    pub assignment_rule: Option<String>,
    /// The SOQL of a query job.
    pub query: Option<String>,
    /// File name (under the bulk directory) of the uploaded data, once uploaded.
    pub upload: Option<String>,
    /// File name of a query job's results, once complete.
    pub result_file: Option<String>,
    /// Data rows processed so far (the cursor): the next chunk starts at this row.
    pub next_row: u64,
    /// Byte offset in the upload where the next unprocessed row starts (0: not started).
    pub next_offset: u64,
    /// Chunks committed so far.
    pub chunks: u64,
    /// Rows processed (successes and failures).
    pub processed: u64,
    /// Rows failed.
    pub failed: u64,
    /// Times processing was retried after a failure.
    pub retries: u32,
    /// Milliseconds spent processing.
    pub processing_ms: i64,
    /// Why the job failed.
    pub error_message: Option<String>,
    /// Free-form settings of other surfaces (JSON), e.g. Bulk 1.0's concurrency mode.
    pub extra: Option<String>,
    /// The job a Bulk API 1.0 batch (kind `ClassicBatch`) belongs to.
    pub parent: Option<u64>,
}

/// A processed chunk of a job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkChunkRow {
    /// The job's sequence.
    pub job: u64,
    /// Chunk number, from 0.
    pub chunk: u64,
    /// Number of the chunk's first data row in the job, from 0.
    pub first_row: u64,
    /// Rows in the chunk.
    pub rows: u64,
    /// Byte range of the chunk's rows in the job's file.
    pub start_offset: u64,
    /// End of that range (exclusive).
    pub end_offset: u64,
    /// Encoded per-row results (ingest); empty for query result pages.
    pub results: Vec<u8>,
}

/// Which jobs [`crate::ReadTx::bulk_jobs`] lists.
#[derive(Debug, Clone, Default)]
pub struct BulkJobFilter {
    /// Only these kinds (any when empty).
    pub kinds: Vec<String>,
    /// Only these states (any when empty).
    pub states: Vec<String>,
    /// Only jobs created by this user.
    pub created_by: Option<u64>,
    /// Only the batches of this job.
    pub parent: Option<u64>,
    /// Only jobs with a larger sequence (paging).
    pub after_seq: u64,
    /// Only jobs last changed before this time (ms).
    pub modified_before: Option<i64>,
    /// At most this many, in sequence order.
    pub limit: usize,
}

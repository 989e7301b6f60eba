//! Org-wide settings with defaults that work without configuration.

/// Settings of an org; every field has a working default.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    /// Sessions expire after this many seconds without use (Salesforce default: 2 hours).
    pub session_timeout_secs: i64,
    /// API requests allowed per rolling day (`DailyApiRequests`).
    pub daily_api_requests: u64,
    /// Requests running longer than `long_request_ms` at once before new ones are refused.
    pub max_concurrent_long_requests: usize,
    /// A request counts as long-running after this many milliseconds.
    pub long_request_ms: u64,
    /// Failed logins per user within `lockout_window_secs` before the user is locked out.
    pub lockout_attempts: u32,
    /// Window (and lockout duration) for failed logins.
    pub lockout_window_secs: u64,
    /// Successful plus failed logins per user per hour (`LOGIN_RATE_EXCEEDED` beyond).
    pub logins_per_hour: u32,
    /// Failed logins per client address per hour before that address is refused.
    pub failed_logins_per_ip_per_hour: u32,
    /// Largest accepted JSON request body, in bytes.
    pub max_json_body: usize,
    /// Records per query page (and per locator fetch).
    pub query_page_size: usize,
    /// Idle minutes after which a query locator expires.
    pub query_locator_idle_secs: u64,
    /// Most open query cursors before the oldest are dropped.
    pub max_query_cursors: usize,
    /// Hours events stay in the event log (Salesforce: 72).
    pub event_retention_hours: u64,
    /// Streaming API clients connected at once, at most (Salesforce Unlimited Edition: 2,000).
    pub streaming_max_clients: usize,
    /// How long a Streaming API `/meta/connect` is held when nothing arrives (Salesforce: 110 s).
    pub streaming_timeout_ms: u64,
    /// Changes in one transaction after which change events give way to one `GAP_OVERFLOW`
    /// event per further entity (Salesforce: 100,000).
    pub cdc_overflow_after: u64,
    /// How long a requeued notification may stay undelivered before it expires again (ms).
    pub delivery_expiry_ms: i64,
}

impl Default for OrgConfig {
    fn default() -> Self {
        OrgConfig {
            session_timeout_secs: 7200,
            daily_api_requests: 5_000_000,
            max_concurrent_long_requests: 25,
            long_request_ms: 20_000,
            lockout_attempts: 10,
            lockout_window_secs: 15 * 60,
            logins_per_hour: 3600,
            failed_logins_per_ip_per_hour: 200,
            max_json_body: 32 * 1024 * 1024,
            query_page_size: 2000,
            query_locator_idle_secs: 15 * 60,
            max_query_cursors: 10_000,
            event_retention_hours: 72,
            streaming_max_clients: 2000,
            streaming_timeout_ms: 110_000,
            delivery_expiry_ms: 24 * 3_600_000,
            cdc_overflow_after: crate::changes::OVERFLOW_AFTER,
        }
    }
}

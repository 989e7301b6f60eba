//! One subscription stream, for `Subscribe` and `ManagedSubscribe` alike: its position in the
//! event log, how many events the client still wants (at most 100 outstanding), keep-alives that
//! always carry `latest_replay_id`, and (managed subscriptions) commits of replay ids. What
//! differs between the two calls — the request and response messages, what a request may
//! say — is a [`Wire`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use service::events::Selection;
use service::Org;
use tonic::{Code, Status, Streaming};

use crate::proto::{
    CommitReplayRequest, CommitReplayResponse, ConsumerEvent, FetchRequest, FetchResponse,
    ManagedFetchRequest, ManagedFetchResponse,
};
use crate::{consumer_event, failure, replay_bytes, replay_of, unavailable, MAX_OUTSTANDING};

/// Events read ahead while the client has nothing requested, at most: the next response is
/// ready when the client asks again, instead of after a store read.
const READ_AHEAD: usize = MAX_OUTSTANDING as usize;

/// What one request asks for.
pub(crate) struct Ask {
    /// More events (added to the outstanding count).
    pub more: u32,
    /// A replay id to commit (managed subscriptions).
    pub commit: Option<CommitReplayRequest>,
}

/// The messages of one subscription call.
pub(crate) trait Wire: Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    /// What `req` asks, or why it is refused (which ends the stream).
    fn ask(&self, req: &Self::Req, rpc_id: &str) -> Result<Ask, Status>;
    /// A response.
    fn response(&self, r: Reply) -> Self::Resp;
    /// The managed subscription whose position commits move.
    fn managed_seq(&self) -> Option<u64> {
        None
    }
}

/// The parts of a response.
pub(crate) struct Reply {
    pub events: Vec<ConsumerEvent>,
    pub latest: Vec<u8>,
    pub rpc_id: String,
    pub pending: i32,
    pub commit: Option<CommitReplayResponse>,
}

/// `Subscribe`: later requests name the same topic (or none) and add to the count; their
/// preset and replay id are ignored.
pub(crate) struct Plain {
    pub topic: String,
}

impl Wire for Plain {
    type Req = FetchRequest;
    type Resp = FetchResponse;

    fn ask(&self, req: &FetchRequest, rpc_id: &str) -> Result<Ask, Status> {
        if !req.topic_name.is_empty() && req.topic_name != self.topic {
            return Err(failure(
                Code::InvalidArgument,
                "subscription.fetch.topic.mismatch",
                &format!(
                    "The topic {} is not this subscription's ({})",
                    req.topic_name, self.topic
                ),
                rpc_id,
            ));
        }
        if req.num_requested <= 0 {
            return Err(failure(
                Code::InvalidArgument,
                "subscription.fetch.requested.events.invalid",
                "num_requested must be greater than 0",
                rpc_id,
            ));
        }
        Ok(Ask {
            more: req.num_requested as u32,
            commit: None,
        })
    }

    fn response(&self, r: Reply) -> FetchResponse {
        FetchResponse {
            events: r.events,
            latest_replay_id: r.latest,
            rpc_id: r.rpc_id,
            pending_num_requested: r.pending,
        }
    }
}

/// `ManagedSubscribe`: requests may ask for more events, commit a replay id, or both.
pub(crate) struct Managed {
    pub seq: u64,
    /// The subscription's 15-character id and developer name (later requests may name either).
    pub id15: String,
    pub name: String,
}

impl Wire for Managed {
    type Req = ManagedFetchRequest;
    type Resp = ManagedFetchResponse;

    fn ask(&self, req: &ManagedFetchRequest, rpc_id: &str) -> Result<Ask, Status> {
        let names_other = (!req.subscription_id.is_empty()
            && req.subscription_id.get(..15) != Some(self.id15.as_str()))
            || (!req.developer_name.is_empty() && req.developer_name != self.name);
        if names_other {
            return Err(failure(
                Code::InvalidArgument,
                "managed.subscription.fetch.request.invalid",
                "A request names another managed subscription than the stream's",
                rpc_id,
            ));
        }
        if req.num_requested < 0
            || (req.num_requested == 0 && req.commit_replay_id_request.is_none())
        {
            return Err(failure(
                Code::InvalidArgument,
                "managed.subscription.fetch.request.events.invalid",
                "num_requested must be greater than 0",
                rpc_id,
            ));
        }
        Ok(Ask {
            more: req.num_requested as u32,
            commit: req.commit_replay_id_request.clone(),
        })
    }

    fn response(&self, r: Reply) -> ManagedFetchResponse {
        ManagedFetchResponse {
            events: r.events,
            latest_replay_id: r.latest,
            rpc_id: r.rpc_id,
            pending_num_requested: r.pending,
            commit_response: r.commit,
        }
    }

    fn managed_seq(&self) -> Option<u64> {
        Some(self.seq)
    }
}

/// A subscription in progress.
pub(crate) struct Feed<W: Wire> {
    pub org: Arc<Org>,
    pub wire: W,
    pub select: Selection,
    /// Every event of the selection up to this replay id was delivered or skipped (the
    /// position responses report).
    pub cursor: u64,
    /// Events read ahead of `cursor`, not yet requested, and the position after them.
    pub ahead: std::collections::VecDeque<(u64, ConsumerEvent)>,
    pub read_to: u64,
    /// Events requested and not yet delivered.
    pub outstanding: u32,
    pub rpc_id: String,
    pub keepalive: Duration,
    /// The client's requests.
    pub inbound: Streaming<W::Req>,
    pub inbound_open: bool,
    pub next_keepalive: Instant,
    /// Set once the stream ended with an error.
    pub done: bool,
    /// Kept as long as the stream lives (a managed subscription's "active" mark).
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl<W: Wire> Feed<W> {
    /// A subscription of `wire` over `select`, starting after `cursor`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org: Arc<Org>,
        wire: W,
        select: Selection,
        cursor: u64,
        rpc_id: String,
        keepalive: Duration,
        inbound: Streaming<W::Req>,
    ) -> Feed<W> {
        Feed {
            org,
            wire,
            select,
            cursor,
            ahead: Default::default(),
            read_to: cursor,
            outstanding: 0,
            rpc_id,
            keepalive,
            inbound,
            inbound_open: true,
            next_keepalive: Instant::now() + keepalive,
            done: false,
            hold: None,
        }
    }

    /// Applies a request's count (a commit is answered by [`Feed::commit`]).
    pub fn more(&mut self, n: u32) {
        self.outstanding = (self.outstanding + n).min(MAX_OUTSTANDING);
    }

    fn reply(&self, events: Vec<ConsumerEvent>, commit: Option<CommitReplayResponse>) -> W::Resp {
        self.wire.response(Reply {
            events,
            latest: replay_bytes(self.cursor),
            rpc_id: self.rpc_id.clone(),
            pending: self.outstanding as i32,
            commit,
        })
    }

    /// Commits a replay id of a managed subscription; the answer says whether it was kept.
    async fn commit(
        org: Arc<Org>,
        seq: Option<u64>,
        req: CommitReplayRequest,
    ) -> CommitReplayResponse {
        let started = Instant::now();
        let refuse = |msg: &str| CommitReplayResponse {
            commit_request_id: req.commit_request_id.clone(),
            replay_id: req.replay_id.clone(),
            error: Some(crate::proto::Error {
                code: crate::proto::ErrorCode::Commit as i32,
                msg: msg.to_string(),
            }),
            process_time: started.elapsed().as_millis() as i64,
        };
        let Some(seq) = seq else {
            return refuse("only managed subscriptions commit replay ids");
        };
        let bounds = match org.events().bounds() {
            Ok(b) => b,
            Err(_) => return refuse("the event log is unavailable"),
        };
        let Some(id) = replay_of(&req.replay_id).filter(|id| *id <= bounds.last) else {
            return refuse("the replay id is not one this org gave out");
        };
        if let Err(e) = org.commit_managed_replay(seq, id).await {
            return refuse(&e.message);
        }
        CommitReplayResponse {
            commit_request_id: req.commit_request_id.clone(),
            replay_id: req.replay_id.clone(),
            error: None,
            process_time: started.elapsed().as_millis() as i64,
        }
    }

    /// Reads up to `max` events after `read_to` and moves `read_to` past them (and past other
    /// streams' events).
    fn read(&mut self, max: usize) -> Result<Vec<(u64, ConsumerEvent)>, ()> {
        let batch = self
            .org
            .events()
            .read(&self.select, self.read_to, max)
            .map_err(|_| ())?;
        self.read_to = self.read_to.max(batch.through);
        Ok(batch
            .events
            .iter()
            .filter_map(|e| consumer_event(&self.org, e).map(|c| (e.replay_id, c)))
            .collect())
    }

    /// Reads ahead while the client has nothing requested.
    fn read_ahead(&mut self) -> Result<(), ()> {
        let more = self.read(READ_AHEAD - self.ahead.len())?;
        self.ahead.extend(more);
        Ok(())
    }

    /// The next events to send (at most `outstanding`): those read ahead first, then the log.
    /// Moves `cursor` to the last one (or, when nothing is left ahead, to `read_to`).
    fn take(&mut self) -> Result<Vec<ConsumerEvent>, ()> {
        let want = self.outstanding as usize;
        let mut out: Vec<(u64, ConsumerEvent)> = if self.ahead.is_empty() {
            self.read(want)?
        } else {
            let n = want.min(self.ahead.len());
            self.ahead.drain(..n).collect()
        };
        out.truncate(want);
        self.cursor = match (self.ahead.is_empty(), out.last()) {
            (false, Some((id, _))) => *id,
            _ => self.read_to,
        };
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    /// The stream of responses: runs in the task that sends them (no hand-off between tasks),
    /// until the client goes away, a request is refused, or the server stops.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<W::Resp, Status>> + Send {
        futures::stream::unfold(self, |mut feed| async move {
            let next = feed.next().await?;
            Some((next, feed))
        })
    }

    /// The next response; `None` ends the stream.
    async fn next(&mut self) -> Option<Result<W::Resp, Status>> {
        if self.done {
            return None;
        }
        loop {
            if self.outstanding > 0 {
                let Ok(events) = self.take() else {
                    self.done = true;
                    return Some(Err(unavailable(&self.rpc_id)));
                };
                if !events.is_empty() {
                    self.outstanding -= events.len() as u32;
                    self.next_keepalive = Instant::now() + self.keepalive;
                    return Some(Ok(self.reply(events, None)));
                }
            } else if self.ahead.len() < READ_AHEAD && self.read_ahead().is_err() {
                self.done = true;
                return Some(Err(unavailable(&self.rpc_id)));
            }
            if Instant::now() >= self.next_keepalive {
                self.next_keepalive = Instant::now() + self.keepalive;
                return Some(Ok(self.reply(Vec::new(), None)));
            }
            // Wait for events only while the client wants some; the wait also ends when the
            // server stops.
            let after = if self.outstanding > 0 {
                self.read_to
            } else {
                u64::MAX
            };
            let until = self
                .next_keepalive
                .saturating_duration_since(Instant::now());
            let org = self.org.clone();
            tokio::select! {
                msg = self.inbound.message(), if self.inbound_open => match msg {
                    Ok(Some(req)) => {
                        let ask = match self.wire.ask(&req, &self.rpc_id) {
                            Ok(a) => a,
                            Err(s) => {
                                self.done = true;
                                return Some(Err(s));
                            }
                        };
                        self.more(ask.more);
                        if let Some(c) = ask.commit {
                            let answer =
                                Self::commit(self.org.clone(), self.wire.managed_seq(), c).await;
                            return Some(Ok(self.reply(Vec::new(), Some(answer))));
                        }
                    }
                    // The client closed its side: it can ask for nothing more, but still
                    // receives what it asked for.
                    Ok(None) => self.inbound_open = false,
                    Err(_) => return None,
                },
                open = org.events().wait(after, until) => {
                    if !open {
                        return None;
                    }
                }
            }
        }
    }
}

//! One subscription stream, for `Subscribe` and `ManagedSubscribe` alike: its position in the
//! event log, how many events the client still wants (at most 100 outstanding), keep-alives that
//! always carry `latest_replay_id`, and (managed subscriptions) commits of replay ids. What
//! differs between the two calls — the request and response messages, what a request may
//! say — is a [`Wire`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use service::events::Selection;
use service::Org;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

use crate::proto::{
    CommitReplayRequest, CommitReplayResponse, ConsumerEvent, FetchRequest, FetchResponse,
    ManagedFetchRequest, ManagedFetchResponse,
};
use crate::{consumer_event, failure, replay_bytes, replay_of, unavailable, MAX_OUTSTANDING};

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
    /// Every event of the selection up to this replay id was delivered or skipped.
    pub cursor: u64,
    /// Events requested and not yet delivered.
    pub outstanding: u32,
    pub rpc_id: String,
    pub keepalive: Duration,
}

impl<W: Wire> Feed<W> {
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
    async fn commit(&self, req: CommitReplayRequest) -> CommitReplayResponse {
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
        let Some(seq) = self.wire.managed_seq() else {
            return refuse("only managed subscriptions commit replay ids");
        };
        let bounds = match self.org.events().bounds() {
            Ok(b) => b,
            Err(_) => return refuse("the event log is unavailable"),
        };
        let Some(id) = replay_of(&req.replay_id).filter(|id| *id <= bounds.last) else {
            return refuse("the replay id is not one this org gave out");
        };
        if let Err(e) = self.org.commit_managed_replay(seq, id).await {
            return refuse(&e.message);
        }
        CommitReplayResponse {
            commit_request_id: req.commit_request_id.clone(),
            replay_id: req.replay_id.clone(),
            error: None,
            process_time: started.elapsed().as_millis() as i64,
        }
    }

    /// Serves the stream until the client goes away, a request is refused, or the server stops.
    pub async fn run(
        mut self,
        mut inbound: Streaming<W::Req>,
        tx: mpsc::Sender<Result<W::Resp, Status>>,
    ) {
        let mut next_keepalive = Instant::now() + self.keepalive;
        let mut inbound_open = true;
        loop {
            if self.outstanding > 0 {
                let batch = match self.org.events().read(
                    &self.select,
                    self.cursor,
                    self.outstanding as usize,
                ) {
                    Ok(b) => b,
                    Err(_) => {
                        let _ = tx.send(Err(unavailable(&self.rpc_id))).await;
                        return;
                    }
                };
                self.cursor = self.cursor.max(batch.through);
                if !batch.events.is_empty() {
                    let events: Vec<ConsumerEvent> = batch
                        .events
                        .iter()
                        .filter_map(|e| consumer_event(&self.org, e))
                        .collect();
                    self.outstanding -= events.len() as u32;
                    if tx.send(Ok(self.reply(events, None))).await.is_err() {
                        return;
                    }
                    next_keepalive = Instant::now() + self.keepalive;
                    continue;
                }
            }
            if Instant::now() >= next_keepalive {
                if tx.send(Ok(self.reply(Vec::new(), None))).await.is_err() {
                    return;
                }
                next_keepalive = Instant::now() + self.keepalive;
            }
            // Wait for events only while the client wants some; the wait also ends when the
            // server stops.
            let after = if self.outstanding > 0 {
                self.cursor
            } else {
                u64::MAX
            };
            let until = next_keepalive.saturating_duration_since(Instant::now());
            tokio::select! {
                msg = inbound.message(), if inbound_open => match msg {
                    Ok(Some(req)) => {
                        let ask = match self.wire.ask(&req, &self.rpc_id) {
                            Ok(a) => a,
                            Err(s) => {
                                let _ = tx.send(Err(s)).await;
                                return;
                            }
                        };
                        self.more(ask.more);
                        if let Some(c) = ask.commit {
                            let answer = self.commit(c).await;
                            if tx.send(Ok(self.reply(Vec::new(), Some(answer)))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // The client closed its side: it can ask for nothing more, but still
                    // receives what it asked for.
                    Ok(None) => inbound_open = false,
                    Err(_) => return,
                },
                open = self.org.events().wait(after, until) => {
                    if !open {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    }
}

//! The Pub/Sub API: Salesforce's `eventbus.v1.PubSub` gRPC service (same package, methods and
//! field numbers, so Salesforce's own clients work unchanged) over the org's event bus.
//!
//! Every call authenticates with the `accesstoken` and `tenantid` metadata (the same sessions
//! and permissions as REST). `GetTopic` and `GetSchema` describe topics and their Avro schemas;
//! `Subscribe` streams events as the client asks for them (at most 100 outstanding), starting at
//! the tip (LATEST), the oldest retained event (EARLIEST) or after an 8-byte big-endian replay id
//! (CUSTOM), with keep-alive responses that always carry `latest_replay_id`; `Publish` and
//! `PublishStream` commit Avro-encoded platform events and answer one result per event.
//! Failures are gRPC statuses whose `error-code` trailer names Salesforce's
//! `sfdc.platform.eventbus.grpc.*` code.

#[path = "gen/eventbus.v1.rs"]
#[allow(clippy::all, missing_docs)]
pub mod proto;

mod feed;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feed::Feed;
use futures::stream::{FuturesOrdered, StreamExt};
use service::events::{ChannelRefusal, Event};
use service::managed::Start;
use service::pubsub::{Produced, Topic};
use service::{Org, Principal};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

use proto::pub_sub_server::{PubSub, PubSubServer};
use proto::{
    ConsumerEvent, FetchRequest, FetchResponse, ManagedFetchRequest, ManagedFetchResponse,
    ProducerEvent, PublishRequest, PublishResponse, PublishResult, ReplayPreset, SchemaInfo,
    SchemaRequest, TopicInfo, TopicRequest,
};

/// Most events a subscriber may have requested and not yet received.
pub const MAX_OUTSTANDING: u32 = 100;
/// Publish requests of one `PublishStream` being processed at once (their responses keep the
/// requests' order).
const PUBLISH_PIPELINE: usize = 8;

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a subscription stays silent before a keep-alive response (Salesforce: at most
    /// 270 s).
    pub keepalive: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keepalive: Duration::from_secs(60),
        }
    }
}

/// The `eventbus.v1.PubSub` service of an org.
#[derive(Debug, Clone)]
pub struct PubSubApi {
    org: Arc<Org>,
    options: Options,
    /// Managed subscriptions with a stream open now (one at a time each).
    active: Arc<Mutex<HashSet<u64>>>,
}

/// The gRPC routes of the Pub/Sub API, ready to serve on an HTTP/2 listener.
pub fn router(org: Arc<Org>, options: Options) -> axum::Router {
    let api = PubSubApi {
        org,
        options,
        active: Arc::default(),
    };
    tonic::service::Routes::new(PubSubServer::new(api)).into_axum_router()
}

/// Marks a managed subscription active while its stream runs.
struct Active {
    set: Arc<Mutex<HashSet<u64>>>,
    seq: u64,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.seq);
        }
    }
}

/// A gRPC status carrying Salesforce's error code in the `error-code` trailer and the call's
/// rpc id at the end of the message.
pub(crate) fn failure(code: Code, suffix: &str, message: &str, rpc_id: &str) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = format!("sfdc.platform.eventbus.grpc.{suffix}").parse() {
        md.insert("error-code", v);
    }
    Status::with_metadata(code, format!("{message} rpcId: {rpc_id}"), md)
}

fn refusal(r: ChannelRefusal, name: &str, rpc_id: &str) -> Status {
    match r {
        ChannelRefusal::NotFound => failure(
            Code::NotFound,
            "topic.not.found",
            &format!("Topic {name} was not found"),
            rpc_id,
        ),
        ChannelRefusal::Forbidden => failure(
            Code::PermissionDenied,
            "topic.meta.permission",
            &format!("You do not have permission to access topic {name}"),
            rpc_id,
        ),
    }
}

pub(crate) fn replay_bytes(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

pub(crate) fn replay_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn rpc_id() -> String {
    service::events::uuid_v4()
}

impl PubSubApi {
    /// The caller, from the `accesstoken` and `tenantid` metadata.
    fn principal(&self, md: &MetadataMap, rpc_id: &str) -> Result<Principal, Status> {
        let get = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let (Some(token), Some(tenant)) = (get("accesstoken"), get("tenantid")) else {
            return Err(failure(
                Code::Unauthenticated,
                "service.auth.headers.invalid",
                "The accesstoken and tenantid metadata are required",
                rpc_id,
            ));
        };
        let org_id = self.org.org_id();
        if tenant != org_id.as_str() && tenant != org_id.to_18() {
            return Err(failure(
                Code::Unauthenticated,
                "service.auth.error",
                "The tenantid is not the org of this server",
                rpc_id,
            ));
        }
        self.org.authenticate(token).map_err(|_| {
            failure(
                Code::Unauthenticated,
                "service.auth.error",
                "Authentication failed: the access token is invalid or has expired",
                rpc_id,
            )
        })
    }

    fn topic(&self, p: &Principal, name: &str, rpc_id: &str) -> Result<Topic, Status> {
        if name.is_empty() {
            return Err(failure(
                Code::InvalidArgument,
                "topic.validation.empty",
                "The topic name is empty",
                rpc_id,
            ));
        }
        self.org
            .pubsub_topic(p, name)
            .map_err(|r| refusal(r, name, rpc_id))
    }

    /// Where a subscription starts: the replay id after which its first event comes.
    fn start_at(&self, preset: i32, replay_id: &[u8], rpc_id: &str) -> Result<u64, Status> {
        let bus = self.org.events();
        let bounds = bus.bounds().map_err(|_| unavailable(rpc_id))?;
        match ReplayPreset::try_from(preset) {
            Ok(ReplayPreset::Latest) => Ok(bus.tip().max(bounds.last)),
            Ok(ReplayPreset::Earliest) => Ok(bounds.pruned_through),
            Ok(ReplayPreset::Custom) => {
                if replay_id.is_empty() {
                    return Err(failure(
                        Code::InvalidArgument,
                        "subscription.fetch.replayid.validation.failed",
                        "A CUSTOM replay preset needs a replay id",
                        rpc_id,
                    ));
                }
                replay_of(replay_id)
                    .filter(|id| *id >= bounds.pruned_through && *id <= bounds.last)
                    .ok_or_else(|| {
                        failure(
                            Code::InvalidArgument,
                            "subscription.fetch.replayid.corrupted",
                            "The replay id is invalid or outside the retention window; subscribe with EARLIEST or LATEST",
                            rpc_id,
                        )
                    })
            }
            Err(_) => Err(failure(
                Code::InvalidArgument,
                "subscription.fetch.request.invalid",
                &format!("Unknown replay preset {preset}"),
                rpc_id,
            )),
        }
    }

    async fn publish_one(
        &self,
        p: &Principal,
        req: PublishRequest,
        rpc_id: &str,
    ) -> Result<PublishResponse, Status> {
        if req.topic_name.is_empty() {
            return Err(failure(
                Code::InvalidArgument,
                "publish.topic.validation.empty",
                "The topic name is empty",
                rpc_id,
            ));
        }
        if req.events.is_empty() {
            return Err(failure(
                Code::InvalidArgument,
                "publish.event.count.invalid",
                "A publish request needs at least one event",
                rpc_id,
            ));
        }
        let topic = self.topic(p, &req.topic_name, rpc_id)?;
        if !topic.can_publish {
            return Err(failure(
                Code::PermissionDenied,
                "topic.meta.permission",
                &format!("You cannot publish to {}", topic.name),
                rpc_id,
            ));
        }
        let produced = req
            .events
            .into_iter()
            .map(|e| Produced {
                id: e.id,
                schema_id: e.schema_id,
                payload: e.payload,
            })
            .collect();
        let outcomes = self
            .org
            .publish_avro(p, &topic, produced)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.message, "Pub/Sub publish failed");
                failure(Code::Internal, "service.unavailable", &e.message, rpc_id)
            })?;
        let results = outcomes
            .into_iter()
            .map(|o| match o.result {
                Ok(replay) => PublishResult {
                    replay_id: replay_bytes(replay),
                    error: None,
                    correlation_key: o.correlation_key,
                },
                Err(msg) => PublishResult {
                    // Clients decode every result's replay id: eight zero bytes, never none.
                    replay_id: replay_bytes(0),
                    error: Some(proto::Error {
                        code: proto::ErrorCode::Publish as i32,
                        msg,
                    }),
                    correlation_key: o.correlation_key,
                },
            })
            .collect();
        Ok(PublishResponse {
            results,
            schema_id: topic.schema_id().to_string(),
            rpc_id: rpc_id.to_string(),
        })
    }
}

pub(crate) fn unavailable(rpc_id: &str) -> Status {
    failure(
        Code::Unavailable,
        "service.unavailable",
        "The service is unavailable; try again later",
        rpc_id,
    )
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl PubSub for PubSubApi {
    type SubscribeStream = Stream<FetchResponse>;
    type PublishStreamStream = Stream<PublishResponse>;
    type ManagedSubscribeStream = Stream<ManagedFetchResponse>;

    async fn get_topic(&self, req: Request<TopicRequest>) -> Result<Response<TopicInfo>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let name = req.into_inner().topic_name;
        let topic = self.topic(&p, &name, &rpc_id)?;
        Ok(Response::new(TopicInfo {
            topic_name: topic.name.clone(),
            tenant_guid: self.org.org_id().to_18(),
            can_publish: topic.can_publish,
            can_subscribe: topic.can_subscribe,
            schema_id: topic.schema_id().to_string(),
            rpc_id,
        }))
    }

    async fn get_schema(
        &self,
        req: Request<SchemaRequest>,
    ) -> Result<Response<SchemaInfo>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let id = req.into_inner().schema_id;
        let layout = self.org.event_schema_by_id(&p, &id).map_err(|r| match r {
            ChannelRefusal::NotFound => failure(
                Code::NotFound,
                "schema.validation.failed",
                &format!("Schema {id} was not found"),
                &rpc_id,
            ),
            ChannelRefusal::Forbidden => failure(
                Code::PermissionDenied,
                "schema.meta.permission",
                &format!("You do not have permission to read schema {id}"),
                &rpc_id,
            ),
        })?;
        Ok(Response::new(SchemaInfo {
            schema_json: layout.json.clone(),
            schema_id: layout.schema_id.clone(),
            rpc_id,
        }))
    }

    async fn subscribe(
        &self,
        req: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let mut inbound = req.into_inner();
        let first =
            first_request(&mut inbound, "subscription.fetch.request.invalid", &rpc_id).await?;
        let topic = self.topic(&p, &first.topic_name, &rpc_id)?;
        may_subscribe(&topic, &rpc_id)?;
        let cursor = self.start_at(first.replay_preset, &first.replay_id, &rpc_id)?;
        let wire = feed::Plain { topic: topic.name };
        let more = feed::Wire::ask(&wire, &first, &rpc_id)?.more;
        let mut feed = Feed::new(
            self.org.clone(),
            wire,
            topic.select,
            cursor,
            rpc_id,
            self.options.keepalive,
            inbound,
        );
        feed.more(more);
        Ok(Response::new(Box::pin(feed.into_stream())))
    }

    async fn publish(
        &self,
        req: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let resp = self.publish_one(&p, req.into_inner(), &rpc_id).await?;
        Ok(Response::new(resp))
    }

    async fn publish_stream(
        &self,
        req: Request<Streaming<PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let mut inbound = req.into_inner();
        let api = self.clone();
        let (tx, rx) = mpsc::channel(PUBLISH_PIPELINE);
        tokio::spawn(async move {
            // Requests are decoded and committed concurrently (the writer commits them
            // together); responses go out in request order.
            let mut pending = FuturesOrdered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    next = inbound.message(), if open && pending.len() < PUBLISH_PIPELINE => match next {
                        Ok(Some(r)) => {
                            let (api, p, rpc_id) = (api.clone(), p.clone(), rpc_id.clone());
                            pending.push_back(async move { api.publish_one(&p, r, &rpc_id).await });
                        }
                        Ok(None) | Err(_) => open = false,
                    },
                    Some(done) = pending.next(), if !pending.is_empty() => {
                        let failed = done.is_err();
                        if tx.send(done).await.is_err() || failed {
                            return;
                        }
                    }
                    else => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn managed_subscribe(
        &self,
        req: Request<Streaming<ManagedFetchRequest>>,
    ) -> Result<Response<Self::ManagedSubscribeStream>, Status> {
        let rpc_id = rpc_id();
        let p = self.principal(req.metadata(), &rpc_id)?;
        let mut inbound = req.into_inner();
        let first = first_request(
            &mut inbound,
            "managed.subscription.fetch.request.invalid",
            &rpc_id,
        )
        .await?;
        if first.commit_replay_id_request.is_some() {
            return Err(failure(
                Code::InvalidArgument,
                "managed.subscription.fetch.request.commit.request.restricted",
                "The first request of a managed subscription cannot commit a replay id",
                &rpc_id,
            ));
        }
        let (key, suffix) = match (
            first.subscription_id.as_str(),
            first.developer_name.as_str(),
        ) {
            ("", "") => {
                return Err(failure(
                    Code::InvalidArgument,
                    "managed.subscription.id.or.developer.name.empty",
                    "Name the managed subscription by subscription_id or developer_name",
                    &rpc_id,
                ))
            }
            ("", name) => (name, "managed.subscription.developer.name.not.found"),
            (id, _) => (id, "managed.subscription.subscription.id.not.found"),
        };
        let m = self
            .org
            .managed_subscription(key)
            .map_err(|_| unavailable(&rpc_id))?
            .ok_or_else(|| {
                failure(
                    Code::NotFound,
                    suffix,
                    &format!("Managed event subscription {key} was not found"),
                    &rpc_id,
                )
            })?;
        if !m.running {
            return Err(failure(
                Code::FailedPrecondition,
                "managed.subscription.config.stopped",
                &format!(
                    "Managed event subscription {} is stopped (state STOP)",
                    m.name
                ),
                &rpc_id,
            ));
        }
        let topic = self.topic(&p, &m.topic, &rpc_id)?;
        may_subscribe(&topic, &rpc_id)?;
        // Continue after the last commit while it is retained; otherwise start as configured.
        let bounds = self
            .org
            .events()
            .bounds()
            .map_err(|_| unavailable(&rpc_id))?;
        let preset = |s: Start| match s {
            Start::Latest => ReplayPreset::Latest as i32,
            Start::Earliest => ReplayPreset::Earliest as i32,
        };
        let cursor = match m.committed {
            Some(c) if c >= bounds.pruned_through && c <= bounds.last => c,
            Some(_) => self.start_at(preset(m.error_recovery_replay), &[], &rpc_id)?,
            None => self.start_at(preset(m.default_replay), &[], &rpc_id)?,
        };
        let wire = feed::Managed {
            seq: m.seq,
            id15: m.id(&self.org).as_str().to_string(),
            name: m.name.clone(),
        };
        let more = feed::Wire::ask(&wire, &first, &rpc_id)?.more;
        let active = {
            let mut set = self.active.lock().map_err(|_| unavailable(&rpc_id))?;
            if !set.insert(m.seq) {
                return Err(failure(
                    Code::FailedPrecondition,
                    "managed.subscription.already.active",
                    &format!(
                        "Managed event subscription {} already has an open stream",
                        m.name
                    ),
                    &rpc_id,
                ));
            }
            Active {
                set: self.active.clone(),
                seq: m.seq,
            }
        };
        let mut feed = Feed::new(
            self.org.clone(),
            wire,
            topic.select,
            cursor,
            rpc_id,
            self.options.keepalive,
            inbound,
        );
        feed.more(more);
        feed.hold = Some(Box::new(active));
        Ok(Response::new(Box::pin(feed.into_stream())))
    }
}

/// The first request of a subscription stream (it says what the stream is about).
async fn first_request<T>(
    inbound: &mut Streaming<T>,
    suffix: &str,
    rpc_id: &str,
) -> Result<T, Status> {
    inbound.message().await?.ok_or_else(|| {
        failure(
            Code::InvalidArgument,
            suffix,
            "The stream ended before its first request",
            rpc_id,
        )
    })
}

fn may_subscribe(topic: &Topic, rpc_id: &str) -> Result<(), Status> {
    if topic.can_subscribe {
        return Ok(());
    }
    Err(failure(
        Code::PermissionDenied,
        "subscription.topic.cannot.subscribe",
        &format!("You cannot subscribe to {}", topic.name),
        rpc_id,
    ))
}

pub(crate) fn consumer_event(org: &Org, e: &Event) -> Option<ConsumerEvent> {
    let Some((schema_id, payload)) = org.event_avro(e) else {
        tracing::warn!(stream = %e.event.stream, replay_id = e.replay_id, "event has no Avro layout; not delivered");
        return None;
    };
    Some(ConsumerEvent {
        event: Some(ProducerEvent {
            id: e.event.uuid.clone(),
            schema_id,
            payload: payload.to_vec(),
            headers: Vec::new(),
        }),
        replay_id: replay_bytes(e.replay_id),
    })
}

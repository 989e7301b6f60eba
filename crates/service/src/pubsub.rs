//! The Pub/Sub API's use cases, transport-neutral: topics (event channels with their Avro
//! schema and what the caller may do with them), stored events encoded for subscribers, and
//! Avro-encoded events published by clients. The gRPC surface (`grpc-api`) maps these onto the
//! `eventbus.v1.PubSub` service.

use std::sync::Arc;

use model::{ApiError, ApiResult, ErrorCode, ObjectKind};
use store::EventKind;

use crate::auth::Principal;
use crate::avro::Layout;
use crate::coerce::{coerce_record, Mode};
use crate::events::{ChannelRefusal, Event, Selection};

/// Largest event payload a publisher may send (Salesforce: 1 MB).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A Pub/Sub topic as the caller sees it.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Its name (`/event/Low_Ink__e`, `/data/AccountChangeEvent`, `/data/ChangeEvents`).
    pub name: String,
    /// The events it carries.
    pub select: Selection,
    /// The layout of its events (`None` for `/data/ChangeEvents`, whose events have several).
    pub layout: Option<Arc<Layout>>,
    /// Whether the caller may publish to it (platform events the caller may create).
    pub can_publish: bool,
    /// Whether the caller may subscribe to it.
    pub can_subscribe: bool,
}

impl Topic {
    /// The schema id of its events (empty when they have several).
    pub fn schema_id(&self) -> &str {
        self.layout.as_ref().map_or("", |l| l.schema_id.as_str())
    }
}

/// An event a publisher sends.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// The client's id for it (a UUID); becomes the event's `EventUuid`. Empty: one is made.
    pub id: String,
    /// The schema the payload was written with.
    pub schema_id: String,
    /// Avro binary.
    pub payload: Vec<u8>,
}

/// What became of one published event.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The event's id (the client's, or the one made for it).
    pub correlation_key: String,
    /// Its replay id, or why it was refused.
    pub result: Result<u64, String>,
}

impl crate::Org {
    /// The Pub/Sub topic `name` for `p`. Platform event topics are visible to users who may read
    /// or publish their events; change event topics to users who may read the object (every
    /// selected object, View All Data, for `/data/ChangeEvents`). PushTopics are not Pub/Sub
    /// topics.
    pub fn pubsub_topic(&self, p: &Principal, name: &str) -> Result<Topic, ChannelRefusal> {
        let schema = self.schema();
        if let Some(event) = name.strip_prefix("/event/") {
            let o = schema
                .object(event)
                .filter(|o| o.kind == ObjectKind::PlatformEvent && o.name == event)
                .ok_or(ChannelRefusal::NotFound)?;
            let access = p.perms.object(o);
            if !access.read && !access.create {
                return Err(ChannelRefusal::Forbidden);
            }
            return Ok(Topic {
                name: name.to_string(),
                select: Selection::Stream(o.name.clone()),
                layout: self.layouts.of_stream(&schema, &o.name),
                can_publish: access.create,
                can_subscribe: access.read,
            });
        }
        if name.starts_with("/data/") {
            let select = self.channel_selection(p, name)?;
            let layout = match &select {
                Selection::Stream(s) => self.layouts.of_stream(&schema, s),
                Selection::Kind(_) => None,
            };
            return Ok(Topic {
                name: name.to_string(),
                select,
                layout,
                can_publish: false,
                can_subscribe: true,
            });
        }
        Err(ChannelRefusal::NotFound)
    }

    /// The event schema with id `id`, if `p` may see it (the schema of a topic `p` can use).
    pub fn event_schema_by_id(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<Arc<Layout>, ChannelRefusal> {
        let schema = self.schema();
        let layout = self
            .layouts
            .of_schema_id(&schema, id)
            .ok_or(ChannelRefusal::NotFound)?;
        let access = p.perms.object(&layout.object);
        if access.read || (!layout.change && access.create) {
            Ok(layout)
        } else {
            Err(ChannelRefusal::Forbidden)
        }
    }

    /// A stored event in Avro binary, with the id of the schema it was written with (the event
    /// type's current schema). Encoded once per event and kept with it.
    pub fn event_avro(&self, e: &Event) -> Option<(String, Arc<[u8]>)> {
        let schema = self.schema();
        let layout = self.layouts.of_stream(&schema, &e.event.stream)?;
        if let Some((id, bytes)) = e.avro.get() {
            if *id == layout.schema_id {
                return Some((id.clone(), bytes.clone()));
            }
        }
        if e.event.kind == EventKind::Topic {
            return None;
        }
        let bytes: Arc<[u8]> = layout.encode(&e.event.payload, e.event.created_ms).into();
        let _ = e.avro.set((layout.schema_id.clone(), bytes.clone()));
        Some((layout.schema_id.clone(), bytes))
    }

    /// Publishes Avro-encoded events to platform event topic `topic`: each is decoded with the
    /// topic's schema and validated as a REST publish would be; the valid ones are committed
    /// together (durable when this returns) and get their replay ids, the others say why not.
    pub async fn publish_avro(
        &self,
        p: &Principal,
        topic: &Topic,
        events: Vec<Produced>,
    ) -> ApiResult<Vec<Outcome>> {
        let layout = match (&topic.layout, topic.can_publish) {
            (Some(l), true) if !l.change => l.clone(),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InsufficientAccessOrReadonly,
                    format!("you cannot publish to {}", topic.name),
                ))
            }
        };
        let schema = self.schema();
        let o = layout.object.clone();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut valid = Vec::new();
        for e in events {
            let key = if e.id.is_empty() {
                crate::events::uuid_v4()
            } else {
                e.id
            };
            let checked = if e.payload.len() > MAX_EVENT_BYTES {
                Err(format!(
                    "the event is {} bytes; events are limited to {MAX_EVENT_BYTES} bytes",
                    e.payload.len()
                ))
            } else if e.schema_id != layout.schema_id {
                Err(format!(
                    "schema id {:?} is not the current schema of {} ({})",
                    e.schema_id, topic.name, layout.schema_id
                ))
            } else {
                layout.decode(&e.payload).and_then(|body| {
                    coerce_record(p, &schema, &o, &body, Mode::Create)
                        .map_err(|err| format!("{:?}: {}", err.code, err.message))
                })
            };
            match checked {
                Ok(input) => {
                    valid.push((outcomes.len(), key.clone(), input));
                    outcomes.push(Outcome {
                        correlation_key: key,
                        result: Err(String::new()),
                    });
                }
                Err(why) => outcomes.push(Outcome {
                    correlation_key: key,
                    result: Err(why),
                }),
            }
        }
        if valid.is_empty() {
            return Ok(outcomes);
        }
        let p2 = p.clone();
        let results = self
            .store
            .write(move |tx| {
                let mut out = Vec::with_capacity(valid.len());
                for (k, key, input) in valid {
                    tx.savepoint()?;
                    match crate::events::publish_now(tx, &p2, &o, &input, key) {
                        Ok(replay) => {
                            tx.release_savepoint()?;
                            out.push((k, Ok(replay)));
                        }
                        Err(e) => {
                            tx.rollback_savepoint()?;
                            out.push((k, Err(format!("{:?}: {}", e.code, e.message))));
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        for (k, r) in results {
            outcomes[k].result = r;
        }
        Ok(outcomes)
    }
}

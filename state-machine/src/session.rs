//! Client sessions: a retried proposal is answered, never applied twice (Raft dissertation,
//! section 6.3).
//!
//! A node forwards a client's command to the leader and retries when an answer is lost, and an
//! answer can be lost after the leader committed the command (the leader killed or cut off
//! between commit and reply). So every client command carries a `ClientRequest`: a client id
//! and a sequence number. A client sends one request at a time (a node gives each of its
//! concurrent requests a client of its own), so the state keeps, per client, only the last
//! sequence it applied and that request's response:
//!
//! - the same sequence again is a retry: it gets the first response, and nothing changes;
//! - an older sequence was already superseded by its client: it is refused and changes nothing;
//! - a newer sequence is applied, and its response recorded.
//!
//! A refused request is not recorded (a refusal changes nothing, and a retry of it is refused
//! again or, if the state changed meanwhile, applied once). The table is bounded: sessions idle
//! for `Limits::session_ttl_ms` by the state's clock are forgotten, and past
//! `Limits::max_sessions` the least recently used one goes first. Both orders are the log's,
//! so every replica forgets the same sessions.
//!
//! A submission's response is stored without its job list, which can hold a thousand names:
//! the jobs are read back from the pipeline when a retry is answered.

use crate::{JobRef, PipelineId, Response, State};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who sent a request: a random id a node draws for each of its concurrent request slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:016x}", self.0)
    }
}

/// The session stamp of one client command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub client: ClientId,
    /// Starts at 1 and grows by one with each new request of the client.
    pub seq: u64,
}

/// What a session remembers of its last applied request's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// A submission: the jobs are read back from the pipeline.
    Submitted {
        pipeline: PipelineId,
        duplicate: bool,
    },
    Other(Response),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    last_seq: u64,
    answer: Answer,
    last_used_ms: u64,
}

/// What a request is, against its client's session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not seen yet: apply it.
    New,
    /// The request last applied for this client: answer it with this.
    Retry(Response),
    /// Older than the client's last request.
    Stale { last_seq: u64 },
}

/// Every client's session, with an index by last use for expiry and eviction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    by_client: OrdMap<ClientId, Session>,
    by_use: OrdSet<(u64, ClientId)>,
}

impl Sessions {
    /// How many clients have a session.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// The last sequence applied for `client`, if it has a session.
    pub fn last_seq(&self, client: ClientId) -> Option<u64> {
        self.by_client.get(&client).map(|s| s.last_seq)
    }

    pub(crate) fn seen(&self, request: ClientRequest, state: &State) -> Seen {
        let Some(session) = self.by_client.get(&request.client) else {
            return Seen::New;
        };
        match request.seq.cmp(&session.last_seq) {
            std::cmp::Ordering::Greater => Seen::New,
            std::cmp::Ordering::Equal => Seen::Retry(session.answer.replay(state)),
            std::cmp::Ordering::Less => Seen::Stale {
                last_seq: session.last_seq,
            },
        }
    }

    /// Records the response of an applied request at `now_ms`, first forgetting sessions idle
    /// past `ttl_ms` and then, while `max` sessions are held, the least recently used.
    pub(crate) fn record(&mut self, request: ClientRequest, response: &Response, now_ms: u64, ttl_ms: u64, max: usize) {
        if let Some(old) = self.by_client.remove(&request.client) {
            self.by_use.remove(&(old.last_used_ms, request.client));
        }
        self.expire(now_ms, ttl_ms);
        while self.by_client.len() >= max.max(1) {
            let Some((used, client)) = self.by_use.remove_min() else {
                break;
            };
            debug_assert!(used <= now_ms);
            self.by_client.remove(&client);
        }
        let answer = match response {
            Response::Submitted {
                pipeline, duplicate, ..
            } => Answer::Submitted {
                pipeline: *pipeline,
                duplicate: *duplicate,
            },
            other => Answer::Other(other.clone()),
        };
        self.by_client.insert(
            request.client,
            Session {
                last_seq: request.seq,
                answer,
                last_used_ms: now_ms,
            },
        );
        self.by_use.insert((now_ms, request.client));
    }

    /// Forgets the sessions last used more than `ttl_ms` before `now_ms`.
    fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        while let Some(&(used, client)) = self.by_use.get_min() {
            if now_ms.saturating_sub(used) <= ttl_ms {
                break;
            }
            self.by_use.remove_min();
            self.by_client.remove(&client);
        }
    }

    /// Whether the two views of the table agree (an invariant).
    pub(crate) fn consistent(&self) -> bool {
        self.by_use.len() == self.by_client.len()
            && self
                .by_use
                .iter()
                .all(|(used, client)| self.by_client.get(client).is_some_and(|s| s.last_used_ms == *used))
    }
}

impl Answer {
    /// The response as the request first got it.
    fn replay(&self, state: &State) -> Response {
        match self {
            Answer::Submitted { pipeline, duplicate } => Response::Submitted {
                pipeline: *pipeline,
                jobs: state
                    .pipeline(*pipeline)
                    .map(|p| {
                        p.jobs
                            .iter()
                            .filter_map(|j| state.job(*j))
                            .map(|j| JobRef {
                                id: j.id,
                                name: j.spec.name.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                duplicate: *duplicate,
            },
            Answer::Other(response) => response.clone(),
        }
    }
}

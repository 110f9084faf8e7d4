//! Command handlers, one file per group of commands, all `impl State` blocks.
//!
//! Each handler validates everything first and returns `Err(Rejection)` before its first
//! mutation, so a rejected command changes nothing.

mod archive;
mod artifacts;
mod caches;
mod cancel;
mod gates;
mod join_tokens;
mod lifecycle;
mod logs;
mod notifiers;
mod plan;
mod pools;
mod repositories;
mod retention;
mod schedules;
mod secrets;
mod settings;
mod submit;
mod tokens;
mod worker;

use crate::{ApplyContext, Event, Rejection, Response};

pub use artifacts::MAX_EXPIRE_ARTIFACTS;
pub(crate) use artifacts::Stored;
pub(crate) use lifecycle::satisfies_dependants;
pub(crate) use submit::Origin;

pub(crate) type Handled = Result<Response, Rejection>;

/// What a handler needs beside the state: the entry being applied (where it sits in the log,
/// its time) and where to put the events it emits.
pub(crate) struct EntryContext {
    pub position: ApplyContext,
    pub now_ms: u64,
    pub events: Vec<Event>,
    /// Output writes of the entry, handed to the caller's sink once it is accepted.
    pub output: Vec<crate::DiskWrite>,
    /// Pipelines that settled during the current command, archived once it is accepted.
    pub settled: Vec<crate::PipelineId>,
}

impl EntryContext {
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn write_disk(&mut self, write: crate::DiskWrite) {
        self.output.push(write);
    }
}

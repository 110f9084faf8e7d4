//! Command handlers, one file per group of commands, all `impl State` blocks.
//!
//! Each handler validates everything first and returns `Err(Rejection)` before its first
//! mutation, so a rejected command changes nothing.

mod cancel;
mod lifecycle;
mod logs;
mod plan;
mod pools;
mod settings;
mod submit;
mod worker;

use crate::{ApplyContext, Event, Rejection, Response};

pub(crate) use lifecycle::satisfies_dependants;

pub(crate) type Handled = Result<Response, Rejection>;

/// What a handler needs beside the state: where the entry sits and where to put events.
pub(crate) struct Cx {
    pub ctx: ApplyContext,
    pub now_ms: u64,
    pub events: Vec<Event>,
}

impl Cx {
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}

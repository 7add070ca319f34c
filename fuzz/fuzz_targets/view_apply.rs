//! The views' `apply` against arbitrary stored events (issue 14 item 1): any type, any data
//! and metadata bytes, on `kv:`, `audit:`, `meta:` streams or any other, in any order. The log
//! checks none of it, so whatever a writer with append rights stores, every view must take.
//!
//! Input: events in the format of `view_events.rs`. For each run:
//! - every event goes to every view's `apply` directly (not through the runner's guard, which
//!   would turn a panic into an apply error): no view may panic;
//! - a failed apply changes nothing the view's digest sees, except a key-value key's version;
//! - the state is a function of the events: applying them again to fresh views gives the same
//!   digests;
//! - checkpoints round-trip: the entries at the end load into fresh views with the same digest,
//!   and the changes since a mark taken halfway, applied to a copy of the state at the mark,
//!   give the same digest (replay from a checkpoint equals replay from 0).
#![no_main]

#[path = "view_events.rs"]
mod view_events;

use libfuzzer_sys::fuzz_target;
use projections::{Projection, Views};

fn digests(views: &[Box<dyn Projection>]) -> Vec<[u8; 32]> {
    views.iter().map(|v| v.digest()).collect()
}

fuzz_target!(|input: &[u8]| {
    let events = view_events::decode(input);
    let half = events.len() / 2;
    let mut views = Views::projections();
    let mut at_mark = Views::projections();
    for (i, event) in events.iter().enumerate() {
        if i == half {
            for (copy, view) in at_mark.iter_mut().zip(&views) {
                copy.load(view.entries()).expect("a view's own entries load");
            }
            views.iter_mut().for_each(|v| v.mark());
        }
        for view in views.iter_mut() {
            let before = (view.name() != "kv").then(|| view.digest());
            if view.apply(event).is_err() {
                if let Some(before) = before {
                    assert_eq!(view.digest(), before, "a failed apply changed {}", view.name());
                }
            }
        }
    }
    if half == events.len() {
        views.iter_mut().for_each(|v| v.mark());
    }
    let end = digests(&views);

    let mut again = Views::projections();
    for event in &events {
        for view in again.iter_mut() {
            let _ = view.apply(event);
        }
    }
    assert_eq!(digests(&again), end, "applying the same events twice gave different states");

    let mut loaded = Views::projections();
    for (copy, view) in loaded.iter_mut().zip(&views) {
        copy.load(view.entries()).expect("a view's own entries load");
    }
    assert_eq!(digests(&loaded), end, "a full checkpoint's entries load to a different state");

    for (copy, view) in at_mark.iter_mut().zip(&views) {
        copy.apply_changes(&view.changes_since_mark()).expect("a view's own changes apply");
    }
    assert_eq!(digests(&at_mark), end, "an incremental checkpoint's changes give a different state");
});

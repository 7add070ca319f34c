//! The rules every part of the metadata view applies events and loads entries by: payloads
//! parse, an event sits on its record's stream, names are bounded and printable.
//!
//! The parts (schemas, services, configuration, relations) and the view itself build on this
//! module; it names none of them.

use log_engine::Event;

use crate::error::{Error, Result};
use crate::projection::{ApplyError, LoadError};

/// The metadata view's name in checkpoints and status reports.
pub(crate) const VIEW_NAME: &str = "meta";

/// Longest name (subject, service, instance, scope, configuration key, entity, relation type,
/// endpoint, tag, capability), in UTF-8 bytes.
pub const META_NAME_LEN_MAX: usize = 200;

/// Parses event data, as an apply error.
pub(super) fn parse<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, ApplyError> {
    serde_json::from_slice(data).map_err(|e| ApplyError::new(format!("bad payload: {e}")))
}

/// Checks that an event sits on the stream its record's identity names.
pub(super) fn check_stream(event: &Event, expected: &str) -> Result<(), ApplyError> {
    if event.stream != expected {
        return Err(ApplyError::new(format!(
            "a {} event for this record belongs on stream {expected}, not {}",
            event.event_type, event.stream
        )));
    }
    Ok(())
}

pub(super) fn load_error(message: String) -> LoadError {
    LoadError { projection: VIEW_NAME.to_string(), message }
}

/// Checks a name: 1 to [`META_NAME_LEN_MAX`] bytes, no control characters.
pub(super) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > META_NAME_LEN_MAX {
        return Err(Error::invalid(format!("a {what} name must be 1 to {META_NAME_LEN_MAX} bytes; {name:?} is not")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(format!("{what} name {name:?} contains control characters")));
    }
    Ok(())
}

/// [`check_name`] for a name in an event that is not part of its stream's name (those cannot
/// hold control characters): the NUL-separated entry keys stay unambiguous, so a state loaded
/// from a checkpoint is the state replayed.
pub(super) fn check_name_applied(what: &str, name: &str) -> Result<(), ApplyError> {
    check_name(what, name).map_err(|e| ApplyError::new(e.to_string()))
}

//! Watch streams: newline-delimited `{"type":…,"object":…}` events over a chunked 200 response.
//! Replays retained history after the requested resourceVersion (or synthetic ADDED events for
//! "0"/absent), then goes live; a too-old resourceVersion gets one ERROR event with a 410
//! `Expired` Status and the end of the stream, as from the real watch cache.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::body::{Body, Cut};
use crate::list::as_version;
use crate::query::Query;
use crate::registry::ResourceType;
use crate::select::Selector;
use crate::status::ApiError;
use crate::store::{Change, ChangeType, Signal, Store};

/// Events buffered between the watch task and the connection; a client slower than this holds
/// the task back, and the broadcast behind it cuts the watch once it lags (`SIGNAL_CAPACITY` in `server.rs`).
const BODY_BUFFER: usize = 64;

/// The bookmark that ends a streaming list's initial events (`sendInitialEvents=true`).
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// What one watch sends, decided under the store lock.
pub(crate) struct Watch {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    timeout: Option<Duration>,
    initial: Vec<Bytes>,
    /// The initial events end the stream (a 410 ERROR).
    ends: bool,
    signals: broadcast::Receiver<Signal>,
    /// Objects as `PartialObjectMetadata` (the client asked for metadata only).
    metadata_only: bool,
}

impl Watch {
    /// Subscribes and gathers the events to replay. Call with the store locked: nothing can
    /// slip between the replay and the live events.
    pub(crate) fn open(
        store: &Store,
        rt: Arc<ResourceType>,
        namespace: Option<String>,
        query: &Query,
        metadata_only: bool,
    ) -> Result<Watch, ApiError> {
        let selector = Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))
            .map_err(ApiError::bad_request)?;
        // Zero, like absent, means no client-chosen timeout.
        let timeout = match query.get("timeoutSeconds").map(str::parse::<u64>) {
            Some(Ok(0)) | None => None,
            Some(Ok(seconds)) => Some(Duration::from_secs(seconds)),
            Some(Err(_)) => return Err(ApiError::bad_request("invalid timeoutSeconds")),
        };
        let mut watch = Watch {
            rt,
            namespace,
            selector,
            bookmarks: query.flag("allowWatchBookmarks"),
            timeout,
            initial: Vec::new(),
            ends: false,
            signals: store.subscribe(),
            metadata_only,
        };
        let rv = query.get("resourceVersion");
        let initial_events = match query.get("sendInitialEvents") {
            Some(_) => query.flag("sendInitialEvents"),
            None => matches!(rv, None | Some("0")),
        };
        if initial_events {
            let objects = store
                .snapshot(&watch.rt.id(), watch.namespace.as_deref(), None)
                .unwrap_or_default();
            for object in objects.values().filter(|o| watch.selector.matches(o)) {
                watch
                    .initial
                    .push(event("ADDED", &watch.shape(as_version(&watch.rt, object))));
            }
            if query.flag("sendInitialEvents") && watch.bookmarks {
                watch.initial.push(watch.bookmark(store.rv(), true));
            }
        } else if let Some(rv) = rv.filter(|rv| *rv != "0") {
            let rv: u64 = rv.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {rv:?}: invalid resource version"
                ))
            })?;
            match store.changes_since(rv) {
                Ok(changes) => {
                    let replay: Vec<Bytes> =
                        changes.iter().filter_map(|c| watch.render(c)).collect();
                    watch.initial = replay;
                }
                Err(too_old) => {
                    let status = ApiError::too_old(too_old.requested, too_old.oldest).to_status();
                    watch.initial.push(event_text("ERROR", &status));
                    watch.ends = true;
                }
            }
        }
        Ok(watch)
    }

    /// Starts the task that feeds the response body.
    pub(crate) fn spawn(self) -> Body {
        let (tx, rx) = mpsc::channel(BODY_BUFFER);
        tokio::spawn(self.run(tx));
        Body::Stream(rx)
    }

    async fn run(mut self, tx: mpsc::Sender<Result<Bytes, Cut>>) {
        for frame in std::mem::take(&mut self.initial) {
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        if self.ends {
            return;
        }
        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let signal = tokio::select! {
                () = &mut expired => return,
                () = tx.closed() => return,
                signal = self.signals.recv() => signal,
            };
            let frame = match signal {
                Ok(Signal::Change(change)) => match self.render(&change) {
                    Some(frame) => Ok(frame),
                    None => continue,
                },
                Ok(Signal::Bookmark(rv)) if self.bookmarks => Ok(self.bookmark(rv, false)),
                Ok(Signal::Bookmark(_)) => continue,
                Ok(Signal::Drop) => Err(Cut("drop_watches")),
                Ok(Signal::Stall) => {
                    tx.closed().await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => Err(Cut("watcher too slow")),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let last = frame.is_err();
            if tx.send(frame).await.is_err() || last {
                return;
            }
        }
    }

    fn shape(&self, object: Value) -> Value {
        if self.metadata_only {
            crate::list::partial(&object)
        } else {
            object
        }
    }

    /// The event this watch sends for `change`, if any: a change that moves an object into or
    /// out of the selector is an ADDED or a DELETED (with the old content), as in the cacher.
    fn render(&self, change: &Change) -> Option<Bytes> {
        if change.resource != self.rt.id() {
            return None;
        }
        if let Some(ns) = &self.namespace
            && !change.key.starts_with(&format!("{ns}/"))
        {
            return None;
        }
        let now = self.selector.matches(&change.object);
        let before = change
            .prev
            .as_deref()
            .is_some_and(|p| self.selector.matches(p));
        let (kind, object) = match (change.kind, before, now) {
            (ChangeType::Added, _, true) => ("ADDED", as_version(&self.rt, &change.object)),
            (ChangeType::Deleted, _, true) => ("DELETED", as_version(&self.rt, &change.object)),
            (ChangeType::Modified, true, true) => {
                ("MODIFIED", as_version(&self.rt, &change.object))
            }
            (ChangeType::Modified, false, true) => ("ADDED", as_version(&self.rt, &change.object)),
            (ChangeType::Modified, true, false) => {
                let mut gone = as_version(&self.rt, change.prev.as_ref()?);
                gone["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                ("DELETED", gone)
            }
            _ => return None,
        };
        Some(event(kind, &self.shape(object)))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        let object = json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(),
            "metadata": metadata,
        });
        event("BOOKMARK", &object)
    }
}

fn event(kind: &str, object: &Value) -> Bytes {
    event_text(kind, &object.to_string())
}

/// One event line: `{"type":"ADDED","object":{...}}` and a newline, as the server frames them.
fn event_text(kind: &str, object_json: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"{kind}\",\"object\":{object_json}}}\n"
    ))
}

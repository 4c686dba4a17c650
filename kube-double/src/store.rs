//! The object store: real object JSON keyed by resource and `namespace/name` (etcd's key order),
//! one global resourceVersion counter, a bounded history of changes (the watch window), and the
//! broadcast that feeds open watches. Past states for continue tokens are rebuilt from history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::Error;
use crate::meta::{Uids, now_rfc3339};
use crate::registry::ResourceType;

/// The storage key of an object inside its resource: `namespace/name`, or `name` when
/// cluster-scoped. Sorting by it gives etcd's (and so the real server's) list order.
pub(crate) type Key = String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One stored change. For `Deleted`, `object` is the last state stamped with the deletion's
/// resourceVersion, as the real server sends it; `prev` is the state before the change.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: ChangeType,
    pub(crate) resource: String,
    pub(crate) key: Key,
    pub(crate) object: Arc<Value>,
    pub(crate) prev: Option<Arc<Value>>,
}

/// What open watches hear.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    Change(Arc<Change>),
    /// Send a bookmark at this resourceVersion (all changes up to it were sent before it).
    Bookmark(u64),
    /// End every watch abruptly.
    Drop,
    /// Every open watch goes silent: no events, no bookmarks, no end at its timeout; the
    /// connection stays open until the client gives up (a hung API server or a half-dead path).
    Stall,
}

/// A requested resourceVersion older than the retained history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooOld {
    pub(crate) requested: u64,
    pub(crate) oldest: u64,
}

pub(crate) struct Store {
    rv: u64,
    /// Changes at or below this resourceVersion are forgotten.
    compacted: u64,
    objects: BTreeMap<String, BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    signals: broadcast::Sender<Signal>,
    uids: Uids,
}

impl Store {
    pub(crate) fn new(history_limit: usize, signals: broadcast::Sender<Signal>) -> Self {
        Store {
            rv: 1,
            compacted: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            signals,
            uids: Uids::new(),
        }
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// Creates or replaces the object, stamping uid, creationTimestamp and a new resourceVersion.
    /// Storing content identical to what is stored changes nothing, as on a real server.
    pub(crate) fn apply(
        &mut self,
        rt: &ResourceType,
        mut object: Value,
    ) -> Result<Arc<Value>, Error> {
        let invalid = |reason: &str| Error::InvalidObject {
            reason: reason.to_owned(),
        };
        let root = object
            .as_object_mut()
            .ok_or_else(|| invalid("not a JSON object"))?;
        root.insert("apiVersion".into(), Value::String(rt.api_version()));
        root.insert("kind".into(), Value::String(rt.kind.clone()));
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| invalid("metadata is not an object"))?;
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                return Err(invalid(
                    "metadata.name is missing (generateName is not supported)",
                ));
            }
        };
        let key = if rt.namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_owned();
            meta.insert("namespace".into(), Value::String(ns.clone()));
            format!("{ns}/{name}")
        } else {
            meta.remove("namespace");
            name
        };

        let resource = rt.id();
        let prev = self
            .objects
            .get(&resource)
            .and_then(|m| m.get(&key))
            .cloned();
        let prev_meta = prev.as_deref().and_then(|p| p.get("metadata"));
        let kept = |field: &str| prev_meta.and_then(|m| m.get(field)).cloned();
        let uid = kept("uid")
            .or_else(|| meta.get("uid").cloned())
            .unwrap_or_else(|| Value::String(self.uids.next()));
        meta.insert("uid".into(), uid);
        let created = kept("creationTimestamp")
            .or_else(|| {
                meta.get("creationTimestamp")
                    .cloned()
                    .filter(|v| !v.is_null())
            })
            .unwrap_or_else(|| Value::String(now_rfc3339()));
        meta.insert("creationTimestamp".into(), created);

        if let Some(prev) = &prev {
            meta.insert(
                "resourceVersion".into(),
                kept("resourceVersion").unwrap_or(Value::Null),
            );
            if object == **prev {
                return Ok(Arc::clone(prev));
            }
        }
        let rv = self.rv + 1;
        set_rv(&mut object, rv);
        let object = Arc::new(object);
        self.objects
            .entry(resource.clone())
            .or_default()
            .insert(key.clone(), Arc::clone(&object));
        let kind = if prev.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(Change {
            rv,
            kind,
            resource,
            key,
            object: Arc::clone(&object),
            prev,
        });
        Ok(object)
    }

    /// Removes the object; `namespace` is ignored for cluster-scoped types.
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let resource = rt.id();
        let key = key_of(rt, namespace, name);
        let prev = self.objects.get_mut(&resource)?.remove(&key)?;
        let rv = self.rv + 1;
        let mut last = (*prev).clone();
        set_rv(&mut last, rv);
        let last = Arc::new(last);
        self.record(Change {
            rv,
            kind: ChangeType::Deleted,
            resource,
            key,
            object: Arc::clone(&last),
            prev: Some(prev),
        });
        Some(last)
    }

    pub(crate) fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&rt.id())?
            .get(&key_of(rt, namespace, name))
            .cloned()
    }

    /// Forgets all history: watches and continue tokens from before now get `410 Expired`.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Asks every watch that allows bookmarks to send one at the current resourceVersion.
    pub(crate) fn bookmark(&self) {
        // No receivers means no open watch: nothing to tell.
        let _ = self.signals.send(Signal::Bookmark(self.rv));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }

    /// The objects of `resource` (in `namespace`, if given) as they were at `at` (now if `None`),
    /// in key order. Past states are rebuilt by undoing retained changes, like etcd reading at a
    /// revision; before the retained window that is impossible, as after etcd compaction.
    pub(crate) fn snapshot(
        &self,
        resource: &str,
        namespace: Option<&str>,
        at: Option<u64>,
    ) -> Result<BTreeMap<Key, Arc<Value>>, TooOld> {
        let prefix = namespace.map(|ns| format!("{ns}/"));
        let in_scope = |key: &str| prefix.as_deref().is_none_or(|p| key.starts_with(p));
        let mut objects: BTreeMap<Key, Arc<Value>> = self
            .objects
            .get(resource)
            .into_iter()
            .flatten()
            .filter(|(key, _)| in_scope(key))
            .map(|(key, object)| (key.clone(), Arc::clone(object)))
            .collect();
        let Some(at) = at.filter(|at| *at < self.rv) else {
            return Ok(objects);
        };
        if at < self.compacted {
            return Err(TooOld {
                requested: at,
                oldest: self.compacted,
            });
        }
        let undo = self.history.iter().rev().take_while(|c| c.rv > at);
        for change in undo.filter(|c| c.resource == resource && in_scope(&c.key)) {
            match (&change.kind, &change.prev) {
                (ChangeType::Added, _) | (_, None) => {
                    objects.remove(&change.key);
                }
                (ChangeType::Modified | ChangeType::Deleted, Some(prev)) => {
                    objects.insert(change.key.clone(), Arc::clone(prev));
                }
            }
        }
        Ok(objects)
    }

    /// Every retained change after `rv`, oldest first.
    pub(crate) fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, TooOld> {
        if rv < self.compacted {
            return Err(TooOld {
                requested: rv,
                oldest: self.compacted,
            });
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }

    fn record(&mut self, change: Change) {
        self.rv = change.rv;
        let change = Arc::new(change);
        self.history.push_back(Arc::clone(&change));
        while self.history.len() > self.history_limit {
            if let Some(oldest) = self.history.pop_front() {
                self.compacted = oldest.rv;
            }
        }
        // No receivers means no open watch; the history still has the change for later ones.
        let _ = self.signals.send(Signal::Change(change));
    }
}

pub(crate) fn key_of(rt: &ResourceType, namespace: &str, name: &str) -> Key {
    if rt.namespaced {
        format!("{namespace}/{name}")
    } else {
        name.to_owned()
    }
}

fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

#[cfg(test)]
mod tests;

//! One watch's objects. A relist (kube-rs `Init` … `InitApply`… `InitDone`) fills a new map
//! beside the live one and swaps it in only when complete, so a table built in between sees
//! the last full state, never half of a relist.

use std::collections::HashMap;

use super::model::{Key, Object};

/// A change from one watch, its object already reduced to what the routes need (`None`: the
/// object contributes nothing, which is a removal if it did before).
#[derive(Debug)]
pub enum Change {
    Init,
    InitApply(Key, Option<Object>),
    InitDone,
    Apply(Key, Option<Object>),
    Delete(Key),
}

/// What a change did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The live objects changed: a new table is due.
    Changed,
    /// Nothing a table would show changed (a status-only update, a relist in progress).
    Unchanged,
}

/// The objects of one watch (one resource in one namespace, or in all).
#[derive(Debug, Default)]
pub struct Store {
    live: HashMap<Key, Object>,
    relist: Option<HashMap<Key, Object>>,
    /// Set by the first `InitDone`: the store holds a complete list.
    synced: bool,
    /// Lists completed; more than one means relists.
    lists: u64,
}

impl Store {
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Lists started so far, the first included.
    pub fn lists(&self) -> u64 {
        self.lists
    }

    pub fn objects(&self) -> impl Iterator<Item = (&Key, &Object)> {
        self.live.iter()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// The resource is not served: count it as listed, with nothing in it (the objects it had,
    /// if any, are kept: a CRD briefly missing must not drop its rules).
    pub fn mark_absent(&mut self) -> Outcome {
        self.relist = None;
        if self.synced {
            return Outcome::Unchanged;
        }
        self.synced = true;
        Outcome::Changed
    }

    pub fn apply(&mut self, change: Change) -> Outcome {
        match change {
            Change::Init => {
                self.lists += 1;
                self.relist = Some(HashMap::with_capacity(self.live.len()));
                Outcome::Unchanged
            }
            Change::InitApply(key, object) => {
                match (&mut self.relist, object) {
                    (Some(relist), Some(object)) => {
                        relist.insert(key, object);
                    }
                    // An InitApply outside Init would be a watcher bug; treat it as an Apply.
                    (None, object) => return self.apply(Change::Apply(key, object)),
                    (Some(_), None) => {}
                }
                Outcome::Unchanged
            }
            Change::InitDone => {
                let first = !self.synced;
                self.synced = true;
                match self.relist.take() {
                    Some(listed) if first || listed != self.live => {
                        self.live = listed;
                        Outcome::Changed
                    }
                    Some(_) => Outcome::Unchanged,
                    None if first => Outcome::Changed,
                    None => Outcome::Unchanged,
                }
            }
            Change::Apply(key, Some(object)) => {
                if self.live.get(&key) == Some(&object) {
                    return Outcome::Unchanged;
                }
                self.live.insert(key, object);
                Outcome::Changed
            }
            Change::Apply(key, None) | Change::Delete(key) => match self.live.remove(&key) {
                Some(_) => Outcome::Changed,
                None => Outcome::Unchanged,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::model::{NamedPort, ServiceInfo};

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    fn svc(port: u16) -> Option<Object> {
        Some(Object::Service(ServiceInfo {
            ports: Box::new([NamedPort {
                name: "".into(),
                port,
            }]),
            headless: false,
        }))
    }

    fn names(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = store.objects().map(|(k, _)| k.1.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_first_list_is_a_change_even_when_empty() {
        let mut s = Store::default();
        assert_eq!(s.apply(Change::Init), Outcome::Unchanged);
        assert!(!s.synced());
        assert_eq!(s.apply(Change::InitDone), Outcome::Changed);
        assert!(s.synced());
        assert_eq!(s.lists(), 1);
    }

    #[test]
    fn a_relist_is_invisible_until_done_and_drops_what_vanished() {
        let mut s = Store::default();
        s.apply(Change::Init);
        s.apply(Change::InitApply(key("a"), svc(80)));
        s.apply(Change::InitApply(key("b"), svc(80)));
        s.apply(Change::InitDone);
        assert_eq!(names(&s), ["a", "b"]);

        s.apply(Change::Init);
        assert_eq!(
            s.apply(Change::InitApply(key("a"), svc(81))),
            Outcome::Unchanged
        );
        // Mid-relist the live view is still the old, complete one.
        assert_eq!(names(&s), ["a", "b"]);
        assert_eq!(s.apply(Change::InitDone), Outcome::Changed);
        assert_eq!(names(&s), ["a"]);
        assert_eq!(s.lists(), 2);
    }

    #[test]
    fn a_relist_that_finds_the_same_objects_changes_nothing() {
        let mut s = Store::default();
        for _ in 0..2 {
            s.apply(Change::Init);
            s.apply(Change::InitApply(key("a"), svc(80)));
        }
        // (the first relist never finished: a restart mid-list starts over)
        s.apply(Change::InitDone);
        s.apply(Change::Init);
        s.apply(Change::InitApply(key("a"), svc(80)));
        assert_eq!(s.apply(Change::InitDone), Outcome::Unchanged);
    }

    #[test]
    fn applies_and_deletes_report_only_real_changes() {
        let mut s = Store::default();
        s.apply(Change::Init);
        s.apply(Change::InitDone);
        assert_eq!(s.apply(Change::Apply(key("a"), svc(80))), Outcome::Changed);
        assert_eq!(
            s.apply(Change::Apply(key("a"), svc(80))),
            Outcome::Unchanged
        );
        assert_eq!(s.apply(Change::Apply(key("a"), svc(81))), Outcome::Changed);
        // An object that stops contributing (say, turned into ExternalName) is removed.
        assert_eq!(s.apply(Change::Apply(key("a"), None)), Outcome::Changed);
        assert_eq!(s.apply(Change::Delete(key("a"))), Outcome::Unchanged);
        assert_eq!(s.len(), 0);
    }
}

//! What a test changes while the server runs: accepted bearer tokens, forbidden verbs, injected
//! failures, response delay and availability. Lock-free (arc-swap snapshots and atomics) so the
//! test-facing setters are plain synchronous calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::registry::ResourceType;

/// Whether the server takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Up,
    /// Accepted sockets are closed at once and open connections are cut.
    Down,
    /// The server was dropped: everything ends.
    Shutdown,
}

/// One forbidden (resource, verb, namespace) triple; `*` matches any verb.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forbid {
    resource: String,
    verb: String,
    namespace: Option<String>,
}

pub(crate) struct Controls {
    /// token → user name.
    tokens: ArcSwap<BTreeMap<String, String>>,
    forbidden: ArcSwap<Vec<Forbid>>,
    /// Remaining injected failures (high 48 bits) and their HTTP status (low 16 bits), in one
    /// word so that taking one is a single atomic update.
    failures: AtomicU64,
    delay_ms: AtomicU64,
    availability: watch::Sender<Availability>,
}

impl Controls {
    pub(crate) fn new(token: &str, user: &str) -> Self {
        let tokens = BTreeMap::from([(token.to_owned(), user.to_owned())]);
        Controls {
            tokens: ArcSwap::from_pointee(tokens),
            forbidden: ArcSwap::from_pointee(Vec::new()),
            failures: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            availability: watch::Sender::new(Availability::Up),
        }
    }

    /// The user a bearer token authenticates as.
    pub(crate) fn user_for(&self, token: &str) -> Option<String> {
        self.tokens.load().get(token).cloned()
    }

    pub(crate) fn add_token(&self, token: &str, user: &str) {
        self.tokens.rcu(|tokens| {
            let mut tokens = BTreeMap::clone(tokens);
            tokens.insert(token.to_owned(), user.to_owned());
            tokens
        });
    }

    pub(crate) fn revoke_token(&self, token: &str) {
        self.tokens.rcu(|tokens| {
            let mut tokens = BTreeMap::clone(tokens);
            tokens.remove(token);
            tokens
        });
    }

    pub(crate) fn forbid(&self, resource: &ResourceType, verb: &str, namespace: Option<&str>) {
        let rule = Forbid {
            resource: resource.id(),
            verb: verb.to_owned(),
            namespace: namespace.map(str::to_owned),
        };
        self.forbidden.rcu(|rules| {
            let mut rules = Vec::clone(rules);
            if !rules.contains(&rule) {
                rules.push(rule.clone());
            }
            rules
        });
    }

    pub(crate) fn allow_all(&self) {
        self.forbidden.store(Arc::new(Vec::new()));
    }

    pub(crate) fn is_forbidden(
        &self,
        resource: &ResourceType,
        verb: &str,
        namespace: Option<&str>,
    ) -> bool {
        let id = resource.id();
        self.forbidden.load().iter().any(|rule| {
            rule.resource == id
                && (rule.verb == "*" || rule.verb == verb)
                && rule
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| Some(ns) == namespace)
        })
    }

    /// The next `count` resource requests fail with `status`.
    pub(crate) fn fail_next(&self, count: u32, status: u16) {
        self.failures.store(
            (u64::from(count) << 16) | u64::from(status),
            Ordering::SeqCst,
        );
    }

    /// Takes one injected failure, if any remain.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        let taken = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
                (word >> 16 > 0).then(|| word - (1 << 16))
            })
            .ok()?;
        // `taken` had a non-zero count; its low 16 bits are the status.
        Some((taken & 0xFFFF) as u16)
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn set_availability(&self, availability: Availability) {
        self.availability.send_if_modified(|current| {
            let changed = *current != availability && *current != Availability::Shutdown;
            if changed {
                *current = availability;
            }
            changed
        });
    }

    pub(crate) fn availability(&self) -> watch::Receiver<Availability> {
        self.availability.subscribe()
    }

    pub(crate) fn is_up(&self) -> bool {
        *self.availability.borrow() == Availability::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_failures_run_out() {
        let c = Controls::new("t", "u");
        assert_eq!(c.take_failure(), None);
        c.fail_next(2, 503);
        assert_eq!(c.take_failure(), Some(503));
        assert_eq!(c.take_failure(), Some(503));
        assert_eq!(c.take_failure(), None);
    }

    #[test]
    fn tokens_rotate() {
        let c = Controls::new("old", "me");
        c.add_token("new", "me");
        c.revoke_token("old");
        assert_eq!(c.user_for("old"), None);
        assert_eq!(c.user_for("new").as_deref(), Some("me"));
    }

    #[test]
    fn forbids_match_verb_and_namespace() {
        let c = Controls::new("t", "u");
        let svc = ResourceType::services();
        c.forbid(&svc, "list", Some("x"));
        assert!(c.is_forbidden(&svc, "list", Some("x")));
        assert!(!c.is_forbidden(&svc, "list", None));
        assert!(!c.is_forbidden(&svc, "watch", Some("x")));
        c.forbid(&svc, "*", None);
        assert!(c.is_forbidden(&svc, "watch", None));
        c.allow_all();
        assert!(!c.is_forbidden(&svc, "watch", None));
    }
}

//! The request log: every request the server answered, in order, and a way for a test to await
//! one ("a watch on endpointslices was opened") instead of sleeping.

use tokio::sync::watch;

use crate::query::Query;

/// One answered request. A watch is logged once its subscription is in place, so a change made
/// after [`ApiServer::wait_for_request`](crate::ApiServer::wait_for_request) returns reaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string, without `?`.
    pub query: String,
    /// Whether the bearer token was accepted.
    pub authenticated: bool,
    /// The user the accepted token belongs to (see `ApiServer::add_token`).
    pub user: Option<String>,
    /// The HTTP status answered (200 for a watch that was opened, even if it then sent an ERROR).
    pub status: u16,
    pub user_agent: Option<String>,
}

impl RequestRecord {
    /// A decoded query parameter (empty counts as absent).
    pub fn param(&self, name: &str) -> Option<String> {
        Query::parse(&self.query).get(name).map(str::to_owned)
    }

    pub fn is_watch(&self) -> bool {
        Query::parse(&self.query).flag("watch")
    }

    /// Authenticated and not forbidden.
    pub fn authorized(&self) -> bool {
        self.authenticated && self.status != 403
    }

    /// The resource plural the path addresses (`endpointslices`), if it is a resource path.
    pub fn resource(&self) -> Option<&str> {
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segments.as_slice() {
            ["api", _version, rest @ ..] => rest,
            ["apis", _group, _version, rest @ ..] => rest,
            _ => return None,
        };
        match rest {
            ["namespaces", _ns, plural, ..] => Some(plural),
            [plural, ..] => Some(plural),
            [] => None,
        }
    }

    /// An opened (200) watch of `plural`.
    pub fn is_open_watch_of(&self, plural: &str) -> bool {
        self.status == 200 && self.is_watch() && self.resource() == Some(plural)
    }

    /// A successful (200) list of `plural` (not a watch).
    pub fn is_list_of(&self, plural: &str) -> bool {
        self.status == 200 && !self.is_watch() && self.resource() == Some(plural)
    }
}

pub(crate) struct RequestLog {
    records: watch::Sender<Vec<RequestRecord>>,
}

impl RequestLog {
    pub(crate) fn new() -> Self {
        RequestLog {
            records: watch::Sender::new(Vec::new()),
        }
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        tracing::debug!(
            http.method = %record.method,
            http.path = %record.path,
            http.query = %record.query,
            http.status = record.status,
            "kube-double request"
        );
        self.records.send_modify(|records| records.push(record));
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        self.records.borrow().clone()
    }

    /// Resolves once at least `count` logged requests match `predicate` (counting requests logged
    /// before the call too), with those requests.
    pub(crate) async fn wait_for(
        &self,
        count: usize,
        predicate: impl Fn(&RequestRecord) -> bool,
    ) -> Vec<RequestRecord> {
        let mut rx = self.records.subscribe();
        let matching =
            |records: &Vec<RequestRecord>| records.iter().filter(|r| predicate(r)).count() >= count;
        // The sender lives as long as the server, which outlives this borrow of it.
        let records = match rx.wait_for(matching).await {
            Ok(records) => records.clone(),
            Err(_) => Vec::new(),
        };
        records.into_iter().filter(|r| predicate(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, query: &str) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            authenticated: true,
            user: Some("tester".into()),
            status: 200,
            user_agent: None,
        }
    }

    #[test]
    fn names_the_resource_of_a_path() {
        let r = record(
            "/apis/discovery.k8s.io/v1/namespaces/x/endpointslices",
            "watch=1",
        );
        assert_eq!(r.resource(), Some("endpointslices"));
        assert!(r.is_open_watch_of("endpointslices"));
        assert_eq!(
            record("/api/v1/services/foo", "").resource(),
            Some("services")
        );
        assert_eq!(
            record("/api/v1/namespaces/foo", "").resource(),
            Some("namespaces")
        );
        assert_eq!(record("/api", "").resource(), None);
        assert_eq!(record("/version", "").resource(), None);
    }

    #[tokio::test]
    async fn waits_without_sleeping() {
        let log = std::sync::Arc::new(RequestLog::new());
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.wait_for(2, |r| r.is_list_of("services")).await })
        };
        log.push(record("/api/v1/services", "limit=500"));
        log.push(record("/api/v1/endpoints", ""));
        log.push(record("/api/v1/namespaces/a/services", ""));
        let found = waiter.await.unwrap();
        assert_eq!(found.len(), 2);
    }
}

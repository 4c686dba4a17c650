//! [`ApiServerOptions`]: how a server starts (token, user, extra resource types, bookmark
//! cadence, history size, reported version).

use std::time::Duration;

use crate::registry::ResourceType;

/// The user tokens authenticate as unless a test says otherwise: the gateway's service account.
pub const DEFAULT_USER: &str = "system:serviceaccount:istio-system:eastwest";

/// How a server starts. `Default` is a fresh random token for [`DEFAULT_USER`], Services,
/// EndpointSlices and Namespaces, a bookmark a minute (the real server's cadence) and 10,000
/// changes of history.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// The token written into kubeconfigs; `None` makes a random one.
    pub token: Option<String>,
    pub user: String,
    /// Types served besides the built-in Services, EndpointSlices and Namespaces.
    pub resources: Vec<ResourceType>,
    /// How often watches that allow bookmarks get one; `None` only on `send_bookmarks()`.
    pub bookmark_interval: Option<Duration>,
    /// Changes kept for watch replay and continue tokens; older ones are compacted away.
    pub history_limit: usize,
    /// `/version`'s `gitVersion`.
    pub git_version: String,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            token: None,
            user: DEFAULT_USER.to_owned(),
            resources: Vec::new(),
            bookmark_interval: Some(Duration::from_secs(60)),
            history_limit: 10_000,
            git_version: "v1.32.0".to_owned(),
        }
    }
}

impl ApiServerOptions {
    #[must_use]
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    #[must_use]
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    #[must_use]
    pub fn resource(mut self, rt: ResourceType) -> Self {
        self.resources.push(rt);
        self
    }

    #[must_use]
    pub fn bookmark_interval(mut self, interval: Option<Duration>) -> Self {
        self.bookmark_interval = interval;
        self
    }

    #[must_use]
    pub fn history_limit(mut self, changes: usize) -> Self {
        self.history_limit = changes;
        self
    }
}

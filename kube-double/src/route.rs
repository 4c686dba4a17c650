//! URL paths → what they address: discovery documents or a resource collection/object, the way
//! the API server lays them out (`/api/v1/namespaces/{ns}/services/{name}`,
//! `/apis/{group}/{version}/{plural}`).

use std::sync::Arc;

use crate::registry::{Registry, ResourceType};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    Health,
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    Resource(Target),
    NotFound,
}

/// A collection (no name) or one object, at cluster scope or in a namespace.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) rt: Arc<ResourceType>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
}

pub(crate) fn route(path: &str, registry: &Registry) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::Resources {
            group: String::new(),
            version: "v1".to_owned(),
        },
        ["api", "v1", rest @ ..] => target(registry, "", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] if registry.groups().iter().any(|(g, _)| g == group) => {
            Route::Group((*group).to_owned())
        }
        ["apis", group, version] if registry.serves(group, version) => Route::Resources {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        },
        ["apis", group, version, rest @ ..] => target(registry, group, version, rest),
        _ => Route::NotFound,
    }
}

fn target(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Route::NotFound,
    };
    let Some(rt) = registry.by_path(group, version, plural) else {
        return Route::NotFound;
    };
    // A namespaced type's single object lives only under a namespace, and a cluster-scoped type
    // has no namespaced paths.
    if (rt.namespaced && namespace.is_none() && name.is_some())
        || (!rt.namespaced && namespace.is_some())
    {
        return Route::NotFound;
    }
    Route::Resource(Target {
        rt,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(path: &str) -> (String, Option<String>, Option<String>) {
        match route(path, &Registry::builtin()) {
            Route::Resource(t) => (t.rt.id(), t.namespace, t.name),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        assert_eq!(
            target_of("/api/v1/services"),
            ("services".into(), None, None)
        );
        assert_eq!(
            target_of("/api/v1/namespaces/x/services/foo"),
            ("services".into(), Some("x".into()), Some("foo".into()))
        );
        assert_eq!(
            target_of("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices"),
            (
                "endpointslices.discovery.k8s.io".into(),
                Some("x".into()),
                None
            )
        );
        assert_eq!(
            target_of("/api/v1/namespaces/x"),
            ("namespaces".into(), None, Some("x".into()))
        );
        assert_eq!(
            target_of("/api/v1/namespaces"),
            ("namespaces".into(), None, None)
        );
    }

    #[test]
    fn other_paths() {
        let r = Registry::builtin();
        assert_eq!(route("/api/v1/services/foo", &r), Route::NotFound);
        assert_eq!(route("/api/v1/secrets", &r), Route::NotFound);
        assert_eq!(
            route("/apis/discovery.k8s.io", &r),
            Route::Group("discovery.k8s.io".into())
        );
        assert_eq!(route("/apis/apps/v1", &r), Route::NotFound);
        assert_eq!(route("/version", &r), Route::Version);
        assert_eq!(route("/openapi/v2", &r), Route::NotFound);
    }
}

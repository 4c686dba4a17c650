//! Resource types the double serves: group, version, plural, kind, scope, and what discovery says
//! about them. The store, the router and discovery all look types up here; a test adds its own
//! (Istio CRDs, Pods) with [`ApiServer::register`](crate::ApiServer::register).

use std::sync::Arc;

use crate::Error;

/// The verbs a real API server lists for built-in types. The double itself answers only
/// `get`, `list` and `watch`; writes get `405 MethodNotAllowed`.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One API resource: `group`/`version`/`plural` in URLs, `kind` in objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The URL segment: `services`.
    pub plural: String,
    /// Lower-case singular, as discovery shows it: `service`.
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    /// Served from a CustomResourceDefinition. Lists of custom resources carry `apiVersion` and
    /// `kind` in every item; lists of built-in types leave them out, as the real server does.
    pub custom: bool,
}

impl ResourceType {
    /// A type with the singular name derived from `kind` and the standard verbs.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_lowercase(),
            kind: kind.to_owned(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            verbs: STANDARD_VERBS.iter().map(|v| (*v).to_owned()).collect(),
            custom: false,
        }
    }

    /// A type served from a CustomResourceDefinition (see [`ResourceType::custom`]).
    pub fn custom_resource(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
    ) -> Self {
        ResourceType {
            custom: true,
            ..ResourceType::new(group, version, plural, kind, namespaced)
        }
    }

    #[must_use]
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    #[must_use]
    pub fn with_categories(mut self, categories: &[&str]) -> Self {
        self.categories = categories.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Core `v1` Services (`svc`).
    pub fn services() -> Self {
        ResourceType::new("", "v1", "services", "Service", true)
            .with_short_names(&["svc"])
            .with_categories(&["all"])
    }

    /// `discovery.k8s.io/v1` EndpointSlices.
    pub fn endpoint_slices() -> Self {
        ResourceType::new(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        )
    }

    /// Core `v1` Namespaces (`ns`), cluster-scoped.
    pub fn namespaces() -> Self {
        ResourceType::new("", "v1", "namespaces", "Namespace", false).with_short_names(&["ns"])
    }

    /// Core `v1` Nodes (`no`), cluster-scoped; built in.
    pub fn nodes() -> Self {
        ResourceType::new("", "v1", "nodes", "Node", false).with_short_names(&["no"])
    }

    /// Core `v1` Pods (`po`); built in.
    pub fn pods() -> Self {
        ResourceType::new("", "v1", "pods", "Pod", true)
            .with_short_names(&["po"])
            .with_categories(&["all"])
    }

    /// Istio `networking.istio.io/v1` DestinationRules (`dr`); not registered unless a test asks.
    pub fn destination_rules() -> Self {
        ResourceType::custom_resource(
            "networking.istio.io",
            "v1",
            "destinationrules",
            "DestinationRule",
            true,
        )
        .with_short_names(&["dr"])
        .with_categories(&["istio-io", "networking-istio-io"])
    }

    /// `v1` or `group/version`, as objects carry it in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services` or `endpointslices.discovery.k8s.io`: the name kubectl and RBAC messages use,
    /// and the store's key (all versions of a resource share one storage, as in a real server).
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// Every type the server knows, in registration order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Registry {
    /// Services, EndpointSlices, Namespaces, Nodes and Pods: what every cluster serves.
    pub(crate) fn builtin() -> Self {
        let mut registry = Registry::default();
        registry.register(ResourceType::namespaces());
        registry.register(ResourceType::nodes());
        registry.register(ResourceType::pods());
        registry.register(ResourceType::services());
        registry.register(ResourceType::endpoint_slices());
        registry
    }

    /// Adds `rt`, replacing a type with the same group, version and plural.
    pub(crate) fn register(&mut self, rt: ResourceType) {
        let rt = Arc::new(rt);
        match self
            .types
            .iter_mut()
            .find(|t| t.group == rt.group && t.version == rt.version && t.plural == rt.plural)
        {
            Some(existing) => *existing = rt,
            None => self.types.push(rt),
        }
    }

    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.kind == kind && t.api_version() == api_version)
            .cloned()
    }

    pub(crate) fn by_path(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Finds a type by `plural`, `plural.group` or a short name, as kubectl would.
    pub(crate) fn resolve(&self, name: &str) -> Result<Arc<ResourceType>, Error> {
        let matches: Vec<&Arc<ResourceType>> = self
            .types
            .iter()
            .filter(|t| {
                t.id() == name || t.plural == name || t.short_names.iter().any(|s| s == name)
            })
            .collect();
        let Some(first) = matches.first() else {
            return Err(Error::UnknownResource(name.to_owned()));
        };
        if matches.iter().any(|t| t.group != first.group) {
            let ids: Vec<String> = matches.iter().map(|t| t.id()).collect();
            return Err(Error::AmbiguousResource {
                name: name.to_owned(),
                candidates: ids.join(", "),
            });
        }
        Ok(Arc::clone(first))
    }

    /// Groups other than core, each with its versions, in registration order.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) if !versions.contains(&t.version) => {
                    versions.push(t.version.clone())
                }
                Some(_) => {}
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// Whether `group`/`version` is served at all (it may hold no types yet only for core `v1`).
    pub(crate) fn serves(&self, group: &str, version: &str) -> bool {
        (group.is_empty() && version == "v1")
            || self
                .types
                .iter()
                .any(|t| t.group == group && t.version == version)
    }

    pub(crate) fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }
}

//! Discovery documents in their legacy (unaggregated) JSON form: `/version`, `/api`
//! (APIVersions), `/apis` (APIGroupList), `/apis/{group}` (APIGroup) and the APIResourceLists.
//! Clients asking for aggregated discovery (`as=APIGroupDiscoveryList`) get these as plain
//! `application/json`, which client-go and kube-rs take as "not aggregated" and fall back.

use serde_json::{Map, Value, json};

use crate::registry::Registry;

pub(crate) fn version(git_version: &str) -> Value {
    let (major, minor) = git_version
        .trim_start_matches('v')
        .split_once('.')
        .map(|(major, rest)| (major, rest.split('.').next().unwrap_or("")))
        .unwrap_or(("1", ""));
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

pub(crate) fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .map(|(name, versions)| group_body(&name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group(registry: &Registry, name: &str) -> Option<Value> {
    let (name, versions) = registry.groups().into_iter().find(|(g, _)| g == name)?;
    let mut body = json!({"kind": "APIGroup", "apiVersion": "v1"});
    if let (Some(out), Value::Object(fields)) = (body.as_object_mut(), group_body(&name, versions))
    {
        out.extend(fields);
    }
    Some(body)
}

/// The APIResourceList of one group/version.
pub(crate) fn resources(registry: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = registry
        .in_group_version(group, version)
        .iter()
        .map(|rt| {
            let mut r = Map::new();
            r.insert("name".into(), json!(rt.plural));
            r.insert("singularName".into(), json!(rt.singular));
            r.insert("namespaced".into(), json!(rt.namespaced));
            r.insert("kind".into(), json!(rt.kind));
            r.insert("verbs".into(), json!(rt.verbs));
            if !rt.short_names.is_empty() {
                r.insert("shortNames".into(), json!(rt.short_names));
            }
            if !rt.categories.is_empty() {
                r.insert("categories".into(), json!(rt.categories));
            }
            Value::Object(r)
        })
        .collect();
    let mut list = Map::new();
    list.insert("kind".into(), json!("APIResourceList"));
    if group.is_empty() {
        list.insert("groupVersion".into(), json!(version));
    } else {
        // The core list has no apiVersion on the wire; group lists do.
        list.insert("apiVersion".into(), json!("v1"));
        list.insert("groupVersion".into(), json!(format!("{group}/{version}")));
    }
    list.insert("resources".into(), Value::Array(resources));
    Value::Object(list)
}

/// `name`, `versions` (most preferred first, by Kubernetes version priority) and
/// `preferredVersion`.
fn group_body(name: &str, mut versions: Vec<String>) -> Value {
    versions.sort_by_key(|v| std::cmp::Reverse(priority(v)));
    let entry = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    let listed: Vec<Value> = versions.iter().map(|v| entry(v)).collect();
    let preferred = versions.first().map(|v| entry(v)).unwrap_or(Value::Null);
    json!({"name": name, "versions": listed, "preferredVersion": preferred})
}

/// Kubernetes version priority: GA above beta above alpha, then higher numbers first;
/// anything else sorts last.
fn priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(major) = rest[..digits_end].parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits_end..];
    let stage = |prefix: &str, tier: u8| {
        tail.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .map(|minor| (tier, major, minor))
    };
    match tail {
        "" => (3, major, 0),
        _ => stage("beta", 2)
            .or_else(|| stage("alpha", 1))
            .unwrap_or((0, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ResourceType;

    #[test]
    fn core_resource_list_names_services() {
        let body = resources(&Registry::builtin(), "", "v1");
        assert!(body.get("apiVersion").is_none());
        let svc = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "services")
            .unwrap();
        assert_eq!(svc["singularName"], "service");
        assert_eq!(svc["kind"], "Service");
        assert_eq!(svc["namespaced"], true);
        assert_eq!(svc["shortNames"], json!(["svc"]));
    }

    #[test]
    fn preferred_version_is_the_most_stable() {
        let mut registry = Registry::builtin();
        for v in ["v1alpha3", "v1", "v1beta1"] {
            registry.register(ResourceType::custom_resource(
                "networking.istio.io",
                v,
                "destinationrules",
                "DestinationRule",
                true,
            ));
        }
        let body = group(&registry, "networking.istio.io").unwrap();
        assert_eq!(body["preferredVersion"]["version"], "v1");
        let versions: Vec<&str> = body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["v1", "v1beta1", "v1alpha3"]);
        assert_eq!(version("v1.32.0")["minor"], "32");
    }
}

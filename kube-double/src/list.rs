//! GET of a collection or one object: selectors, `limit` + `continue` pages that stay consistent
//! at the first page's resourceVersion (rebuilt from history; `410 Expired` once it is gone),
//! and the real server's shape (`ServiceList`, built-in list items without `kind`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::query::Query;
use crate::registry::ResourceType;
use crate::select::Selector;
use crate::status::ApiError;
use crate::store::{Store, TooOld};

/// A list answer.
pub(crate) fn list(
    store: &Store,
    rt: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Value, ApiError> {
    let selector = Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))
        .map_err(ApiError::bad_request)?;
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    // A continue token pins the list to its first page's resourceVersion, and so does
    // `resourceVersionMatch=Exact`; otherwise (any other resourceVersion / resourceVersionMatch)
    // the double serves the most recent state, which every such request accepts.
    let (at, start, expired): (_, _, fn(TooOld) -> ApiError) = match query.get("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (Some(rv), Some(start), |_| ApiError::continue_expired())
        }
        None if query.get("resourceVersionMatch") == Some("Exact") => {
            let rv = query.get("resourceVersion").unwrap_or("");
            let rv = rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {rv:?}: resourceVersionMatch=Exact needs a resourceVersion"
                ))
            })?;
            (Some(rv), None, |_| ApiError::list_too_old())
        }
        None => (None, None, |_| ApiError::continue_expired()),
    };
    let objects = store.snapshot(&rt.id(), namespace, at).map_err(expired)?;
    let list_rv = at.map_or(store.rv(), |at| at.min(store.rv()));

    let mut matching = objects
        .range(start.unwrap_or_default()..)
        .filter(|(_, object)| selector.matches(object));
    let mut items = Vec::new();
    let mut last_key = None;
    for (key, object) in matching.by_ref() {
        items.push(list_item(rt, object));
        last_key = Some(key);
        if limit > 0 && items.len() == limit {
            break;
        }
    }
    let remaining = matching.count();

    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if let (true, Some(last)) = (remaining > 0, last_key) {
        metadata.insert("continue".into(), json!(encode_continue(list_rv, last)));
        if selector.is_empty() {
            metadata.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    Ok(json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

/// A single-object answer.
pub(crate) fn get(
    store: &Store,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let object = store
        .get(rt, namespace.unwrap_or(""), name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    Ok(as_version(rt, &object))
}

/// The object as served through `rt`'s version: stored objects are shared by every version of
/// a resource, and (as for a CRD without conversion webhook) only `apiVersion` changes.
/// What a client that sent `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`
/// (kube-rs `Api<PartialObjectMeta<K>>`, client-go's metadata informers) gets instead of
/// `object`: its `metadata` alone, as `meta.k8s.io/v1` `PartialObjectMetadata`.
pub(crate) fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

/// A list or single object as [`partial`] metadata (`PartialObjectMetadataList` for a list).
pub(crate) fn partial_document(document: &Value) -> Value {
    match document.get("items").and_then(Value::as_array) {
        Some(items) => json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadataList",
            "metadata": document.get("metadata").cloned().unwrap_or(Value::Null),
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        None => partial(document),
    }
}

pub(crate) fn as_version(rt: &ResourceType, object: &Arc<Value>) -> Value {
    let mut object = Value::clone(object);
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), json!(rt.api_version()));
    }
    object
}

fn list_item(rt: &ResourceType, object: &Arc<Value>) -> Value {
    let mut item = as_version(rt, object);
    if !rt.custom
        && let Some(fields) = item.as_object_mut()
    {
        fields.remove("apiVersion");
        fields.remove("kind");
    }
    item
}

/// Like the real server's token: base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":"key\0"}`,
/// where `start` is the first key the next page may hold.
fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}")});
    URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64"))?;
    let token: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))?;
    if token["v"] != "meta.k8s.io/v1" {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    let rv = token["rv"]
        .as_u64()
        .ok_or_else(|| invalid("no resourceVersion"))?;
    let start = token["start"]
        .as_str()
        .ok_or_else(|| invalid("no start key"))?;
    Ok((rv, start.to_owned()))
}

#[cfg(test)]
mod tests;

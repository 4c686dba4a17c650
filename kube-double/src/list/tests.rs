use serde_json::json;
use tokio::sync::broadcast;

use super::*;

fn store_with(n: usize) -> Store {
    let mut s = Store::new(100, broadcast::channel(16).0);
    for i in 0..n {
        let obj = json!({"metadata": {"name": format!("s{i}"), "namespace": if i % 2 == 0 { "a" } else { "b" },
            "labels": {"even": (i % 2 == 0).to_string()}}});
        s.apply(&ResourceType::services(), obj).unwrap();
    }
    s
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pages_follow_continue_tokens_at_the_first_pages_rv() {
    let mut s = store_with(5);
    let rt = ResourceType::services();
    let first = list(&s, &rt, None, &Query::parse("limit=2")).unwrap();
    assert_eq!(first["kind"], "ServiceList");
    assert_eq!(names(&first), ["s0", "s2"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    assert!(
        first["items"][0].get("kind").is_none(),
        "built-in list items carry no kind"
    );
    let rv = first["metadata"]["resourceVersion"].clone();

    // A change between pages does not show up in the rest of this list.
    s.apply(&rt, json!({"metadata": {"name": "s9", "namespace": "b"}}))
        .unwrap();
    let token = first["metadata"]["continue"].as_str().unwrap();
    let second = list(
        &s,
        &rt,
        None,
        &Query::parse(&format!("limit=2&continue={token}")),
    )
    .unwrap();
    assert_eq!(
        names(&second),
        ["s4", "s1"],
        "etcd key order: namespace, then name"
    );
    assert_eq!(second["metadata"]["resourceVersion"], rv);
    let token = second["metadata"]["continue"].as_str().unwrap();
    let third = list(
        &s,
        &rt,
        None,
        &Query::parse(&format!("limit=2&continue={token}")),
    )
    .unwrap();
    assert_eq!(names(&third), ["s3"]);
    assert!(third["metadata"].get("continue").is_none());

    s.compact();
    let err = list(
        &s,
        &rt,
        None,
        &Query::parse(&format!("limit=2&continue={token}")),
    )
    .unwrap_err();
    assert_eq!((err.code, err.reason), (410, "Expired"));
    let err = list(&s, &rt, None, &Query::parse("continue=garbage")).unwrap_err();
    assert_eq!(err.code, 400);
}

#[test]
fn selectors_and_namespaces_narrow_the_list() {
    let s = store_with(5);
    let rt = ResourceType::services();
    let q = Query::parse("labelSelector=even%3Dtrue&limit=2");
    let page = list(&s, &rt, None, &q).unwrap();
    assert_eq!(names(&page), ["s0", "s2"]);
    assert!(page["metadata"].get("remainingItemCount").is_none());
    assert!(page["metadata"]["continue"].is_string());
    let in_b = list(&s, &rt, Some("b"), &Query::default()).unwrap();
    assert_eq!(names(&in_b), ["s1", "s3"]);
    let err = get(&s, &rt, Some("a"), "nope").unwrap_err();
    assert_eq!(err.message, r#"services "nope" not found"#);
}

#[test]
fn custom_resource_items_keep_their_type() {
    let mut s = Store::new(100, broadcast::channel(16).0);
    let rt = ResourceType::destination_rules();
    s.apply(&rt, json!({"metadata": {"name": "dr", "namespace": "a"}}))
        .unwrap();
    let page = list(&s, &rt, None, &Query::default()).unwrap();
    assert_eq!(page["items"][0]["kind"], "DestinationRule");
    assert_eq!(page["items"][0]["apiVersion"], "networking.istio.io/v1");
}

#[test]
fn exact_resource_versions_list_the_past() {
    let mut s = store_with(2);
    let rt = ResourceType::services();
    let at = s.rv();
    s.delete(&rt, "a", "s0").unwrap();
    let q = Query::parse(&format!("resourceVersion={at}&resourceVersionMatch=Exact"));
    let then = list(&s, &rt, None, &q).unwrap();
    assert_eq!(names(&then), ["s0", "s1"]);
    assert_eq!(then["metadata"]["resourceVersion"], at.to_string());
    let now = list(
        &s,
        &rt,
        None,
        &Query::parse("resourceVersion=0&resourceVersionMatch=NotOlderThan"),
    )
    .unwrap();
    assert_eq!(names(&now), ["s1"]);
    s.compact();
    let err = list(&s, &rt, None, &q).unwrap_err();
    assert_eq!((err.code, err.reason), (410, "Expired"));
}

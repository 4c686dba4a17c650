use serde_json::json;
use tokio::sync::broadcast;

use super::*;

fn store() -> Store {
    Store::new(100, broadcast::channel(16).0)
}

fn svc(ns: &str, name: &str, label: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": {"l": label}}})
}

#[test]
fn apply_stamps_metadata_and_bumps_one_global_rv() {
    let mut s = store();
    let rt = ResourceType::services();
    let a = s.apply(&rt, svc("x", "a", "1")).unwrap();
    let b = s.apply(&rt, svc("x", "b", "1")).unwrap();
    assert_eq!(a["metadata"]["resourceVersion"], "2");
    assert_eq!(b["metadata"]["resourceVersion"], "3");
    assert!(a["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(a["metadata"]["creationTimestamp"].is_string());

    let a2 = s.apply(&rt, svc("x", "a", "2")).unwrap();
    assert_eq!(a2["metadata"]["resourceVersion"], "4");
    assert_eq!(
        a2["metadata"]["uid"], a["metadata"]["uid"],
        "uid survives updates"
    );
    assert_eq!(
        a2["metadata"]["creationTimestamp"],
        a["metadata"]["creationTimestamp"]
    );
}

#[test]
fn identical_apply_is_a_no_op() {
    let mut s = store();
    let rt = ResourceType::services();
    s.apply(&rt, svc("x", "a", "1")).unwrap();
    let again = s.apply(&rt, svc("x", "a", "1")).unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], "2");
    assert_eq!(s.rv(), 2);
}

#[test]
fn namespaced_objects_default_to_default_and_cluster_ones_lose_namespace() {
    let mut s = store();
    let obj = s
        .apply(
            &ResourceType::services(),
            json!({"metadata": {"name": "a"}}),
        )
        .unwrap();
    assert_eq!(obj["metadata"]["namespace"], "default");
    let ns = s
        .apply(
            &ResourceType::namespaces(),
            json!({"metadata": {"name": "n", "namespace": "x"}}),
        )
        .unwrap();
    assert!(ns["metadata"].get("namespace").is_none());
    assert_eq!(ns["kind"], "Namespace");
    assert!(
        s.apply(&ResourceType::services(), json!({"metadata": {}}))
            .is_err()
    );
}

#[test]
fn snapshots_rebuild_the_past_and_expire_after_compaction() {
    let mut s = store();
    let rt = ResourceType::services();
    s.apply(&rt, svc("x", "a", "1")).unwrap(); // 2
    s.apply(&rt, svc("x", "b", "1")).unwrap(); // 3
    let at = s.rv();
    s.apply(&rt, svc("x", "a", "2")).unwrap(); // 4 modified
    s.delete(&rt, "x", "b").unwrap(); // 5 deleted
    s.apply(&rt, svc("x", "c", "1")).unwrap(); // 6 added

    let then = s.snapshot("services", None, Some(at)).unwrap();
    let names: Vec<&str> = then.keys().map(String::as_str).collect();
    assert_eq!(names, ["x/a", "x/b"]);
    assert_eq!(then["x/a"]["metadata"]["labels"]["l"], "1");
    let now = s.snapshot("services", Some("x"), None).unwrap();
    assert_eq!(
        now.keys().map(String::as_str).collect::<Vec<_>>(),
        ["x/a", "x/c"]
    );
    assert!(s.snapshot("services", Some("y"), None).unwrap().is_empty());

    s.compact();
    let err = s.snapshot("services", None, Some(at)).unwrap_err();
    assert_eq!((err.requested, err.oldest), (at, 6));
}

#[test]
fn history_is_bounded_and_deletions_carry_a_new_rv() {
    let mut s = Store::new(2, broadcast::channel(16).0);
    let rt = ResourceType::services();
    for i in 0..3 {
        s.apply(&rt, svc("x", &format!("s{i}"), "1")).unwrap(); // 2, 3, 4
    }
    assert!(
        s.changes_since(2).is_ok(),
        "changes after 2 are 3 and 4, both kept"
    );
    let err = s.changes_since(1).unwrap_err();
    assert_eq!((err.requested, err.oldest), (1, 2));
    let gone = s.delete(&rt, "x", "s0").unwrap();
    assert_eq!(gone["metadata"]["resourceVersion"], "5");
    let changes = s.changes_since(4).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeType::Deleted);
    assert!(s.delete(&rt, "x", "s0").is_none());
}

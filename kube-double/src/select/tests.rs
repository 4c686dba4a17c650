use serde_json::json;

use super::*;

fn labelled(labels: Value) -> Value {
    json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
}

fn matches(labels: &str, object: &Value) -> bool {
    Selector::parse(Some(labels), None).unwrap().matches(object)
}

#[test]
fn equality_and_existence() {
    let o = labelled(json!({"kubernetes.io/service-name": "foo", "app": "a"}));
    assert!(matches("kubernetes.io/service-name=foo", &o));
    assert!(matches("kubernetes.io/service-name==foo,app", &o));
    assert!(!matches("kubernetes.io/service-name=bar", &o));
    assert!(matches("app!=b", &o));
    assert!(
        matches("missing!=b", &o),
        "!= matches objects without the label"
    );
    assert!(matches("!missing", &o));
    assert!(!matches("!app", &o));
    assert!(!matches("app,missing", &o));
}

#[test]
fn set_based() {
    let o = labelled(json!({"env": "prod"}));
    assert!(matches("env in (prod, staging)", &o));
    assert!(!matches("env notin (prod)", &o));
    assert!(matches("tier notin (db)", &o));
    assert!(matches("env in (prod),!tier", &o));
    assert!(Selector::parse(Some("env in prod"), None).is_err());
}

#[test]
fn fields() {
    let o = labelled(json!({}));
    let s = Selector::parse(None, Some("metadata.name=n,metadata.namespace!=other")).unwrap();
    assert!(s.matches(&o));
    let s = Selector::parse(None, Some("metadata.name==m")).unwrap();
    assert!(!s.matches(&o));
    assert_eq!(
        Selector::parse(None, Some("spec.clusterIP=None")).unwrap_err(),
        "field label not supported: spec.clusterIP"
    );
}

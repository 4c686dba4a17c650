//! Watch streams through a plain HTTP/1.1 client: replay from a resourceVersion, synthetic ADDED
//! events, selector transitions, 410 expiry, bookmarks, streaming lists, timeouts and cuts.

mod support;

use std::time::Duration;

use eastwest_kube_double::{ApiServer, ApiServerOptions, fixtures};
use hyper::StatusCode;
use serde_json::{Value, json};
use support::{End, SLICES, WatchStream, server, slice, summary};

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_then_goes_live() {
    let server = server().await;
    let a = server.apply(slice("a", "127.0.0.2")).await.unwrap();
    server.apply(slice("b", "127.0.0.3")).await.unwrap();
    server.apply(slice("a", "127.0.0.4")).await.unwrap();
    server.delete("endpointslices", "ns", "b").await.unwrap();

    let mut watch = WatchStream::open(
        &server,
        &format!("{SLICES}?watch=true&resourceVersion={}", rv(&a)),
    )
    .await;
    assert_eq!(watch.status, StatusCode::OK);
    assert_eq!(watch.headers["content-type"], "application/json");
    assert_eq!(watch.headers["transfer-encoding"], "chunked");
    let replayed: Vec<_> = [
        watch.event().await,
        watch.event().await,
        watch.event().await,
    ]
    .iter()
    .map(summary)
    .collect();
    let base = rv(&a);
    let at = |n: u64| (base + n).to_string();
    assert_eq!(
        replayed,
        [
            ("ADDED".into(), "b".into(), at(1)),
            ("MODIFIED".into(), "a".into(), at(2)),
            ("DELETED".into(), "b".into(), at(3)),
        ]
    );
    let c = server.apply(slice("c", "127.0.0.5")).await.unwrap();
    let live = watch.event().await;
    assert_eq!(
        summary(&live),
        ("ADDED".into(), "c".into(), rv(&c).to_string())
    );
    assert_eq!(
        live["object"]["kind"], "EndpointSlice",
        "watch objects carry their kind"
    );
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added() {
    let server = server().await;
    server.apply_all(fixtures::mesh()).await.unwrap();
    let mut watch =
        WatchStream::open(&server, "/api/v1/namespaces/bookinfo/services?watch=1").await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let (kind, name, _) = summary(&watch.event().await);
        assert_eq!(kind, "ADDED");
        names.push(name);
    }
    assert_eq!(names, ["details", "ratings", "reviews"]);
    server
        .apply(fixtures::service("db", "elsewhere").build())
        .await
        .unwrap();
    server
        .apply(fixtures::service("bookinfo", "here").build())
        .await
        .unwrap();
    assert_eq!(
        summary(&watch.event().await).1,
        "here",
        "other namespaces are filtered out"
    );
}

#[tokio::test]
async fn leaving_a_label_selector_is_a_delete() {
    let server = server().await;
    server.apply(slice("a", "127.0.0.2")).await.unwrap();
    let selector = "labelSelector=kubernetes.io%2Fservice-name%3Dsvc";
    let mut watch = WatchStream::open(&server, &format!("{SLICES}?watch=1&{selector}")).await;
    assert_eq!(summary(&watch.event().await).0, "ADDED");
    let moved = fixtures::endpoint_slice("ns", "other", "a")
        .ready_addresses(&["127.0.0.2"])
        .build();
    let moved = server.apply(moved).await.unwrap();
    let event = watch.event().await;
    assert_eq!(
        summary(&event),
        ("DELETED".into(), "a".into(), rv(&moved).to_string())
    );
    assert_eq!(
        event["object"]["metadata"]["labels"]["kubernetes.io/service-name"], "svc",
        "old content"
    );
}

#[tokio::test]
async fn compacted_resource_versions_get_one_410_error_event() {
    let server = server().await;
    let old = server.apply(slice("a", "127.0.0.2")).await.unwrap();
    server.apply(slice("b", "127.0.0.3")).await.unwrap();
    server.compact().await;
    let now = server.resource_version().await;

    let mut watch = WatchStream::open(
        &server,
        &format!("{SLICES}?watch=1&resourceVersion={}", rv(&old)),
    )
    .await;
    assert_eq!(
        watch.status,
        StatusCode::OK,
        "the error comes inside the stream"
    );
    let event = watch.event().await;
    assert_eq!(event["type"], "ERROR");
    assert_eq!(
        event["object"],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("too old resource version: {} ({now})", rv(&old)),
               "reason": "Expired", "code": 410})
    );
    assert_eq!(watch.end().await, End::Clean);

    let mut current =
        WatchStream::open(&server, &format!("{SLICES}?watch=1&resourceVersion={now}")).await;
    server.apply(slice("c", "127.0.0.4")).await.unwrap();
    assert_eq!(
        summary(&current.event().await).1,
        "c",
        "a watch from the compaction point is fine"
    );
}

#[tokio::test]
async fn bookmarks_on_demand_and_on_a_timer() {
    let server = ApiServer::start(ApiServerOptions::default().bookmark_interval(None))
        .await
        .unwrap();
    server.apply(slice("a", "127.0.0.2")).await.unwrap();
    let now = server.resource_version().await;
    let from_now = format!("{SLICES}?watch=1&resourceVersion={now}");
    let mut with =
        WatchStream::open(&server, &format!("{from_now}&allowWatchBookmarks=true")).await;
    let mut without = WatchStream::open(&server, &from_now).await;

    server.send_bookmarks().await;
    server.apply(slice("b", "127.0.0.3")).await.unwrap();
    let bookmark = with.event().await;
    assert_eq!(
        bookmark,
        json!({"type": "BOOKMARK", "object": {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
               "metadata": {"resourceVersion": now.to_string()}}})
    );
    assert_eq!(summary(&with.event().await).1, "b");
    assert_eq!(
        summary(&without.event().await).1,
        "b",
        "no bookmark unless allowed"
    );

    let ticking = ApiServer::start(
        ApiServerOptions::default().bookmark_interval(Some(Duration::from_millis(50))),
    )
    .await
    .unwrap();
    let mut watch =
        WatchStream::open(&ticking, &format!("{SLICES}?watch=1&allowWatchBookmarks=1")).await;
    assert_eq!(watch.event().await["type"], "BOOKMARK");
}

#[tokio::test]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let server = server().await;
    server.apply(slice("a", "127.0.0.2")).await.unwrap();
    let path = format!(
        "{SLICES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    );
    let mut watch = WatchStream::open(&server, &path).await;
    assert_eq!(summary(&watch.event().await).0, "ADDED");
    let end = watch.event().await;
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn watches_end_on_timeout_and_are_cut_on_demand() {
    let server = server().await;
    let mut timed = WatchStream::open(&server, &format!("{SLICES}?watch=1&timeoutSeconds=1")).await;
    assert_eq!(timed.end().await, End::Clean);

    let mut watch = WatchStream::open(&server, &format!("{SLICES}?watch=1")).await;
    server.drop_watches();
    assert_eq!(watch.end().await, End::Cut);
}

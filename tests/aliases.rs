//! Federation-style exports (OpenShift Service Mesh federation): a listener with `aliases`
//! routes only the exported names, each to the local service it stands for, and refuses the
//! local names themselves.

mod support;

use support::{
    Gateway, Upstream, assert_refused, forwards_to_one_of, rustls_client_hello,
    send_tolerating_close,
};

#[test]
fn an_export_listener_routes_only_its_alias_names() {
    let ratings = Upstream::bind();
    let reviews = Upstream::bind();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eastwest.yaml");
    std::fs::write(
        &config,
        "listeners:\n  - name: exports\n    listen: 127.0.0.1:0\n    aliases:\n      \
         - name: ratings.bookinfo.svc.mesh2-exports.local\n        \
         service: ratings.bookinfo.svc.cluster.local\n",
    )
    .unwrap();
    let routes = [
        format!("ratings.bookinfo.svc.cluster.local:9080={}", ratings.addr()),
        format!(
            "ratings.bookinfo.svc.cluster.local:9080/v1={}",
            ratings.addr()
        ),
        format!("reviews.bookinfo.svc.cluster.local:9080={}", reviews.addr()),
    ];
    let mut args = vec!["--config", config.to_str().unwrap()];
    for r in &routes {
        args.extend(["--endpoints", r.as_str()]);
    }
    let mut gw = Gateway::start(&args);
    // The exported name, in Istio form (port and subset carried over).
    for sni in [
        "outbound_.9080_._.ratings.bookinfo.svc.mesh2-exports.local",
        "outbound_.9080_.v1_.ratings.bookinfo.svc.mesh2-exports.local",
    ] {
        assert_eq!(
            forwards_to_one_of(&mut gw, &[&ratings, &reviews], sni),
            0,
            "{sni}"
        );
    }
    // Local names, and services that are not exported, are not reachable through it.
    for sni in [
        "outbound_.9080_._.ratings.bookinfo.svc.cluster.local",
        "outbound_.9080_._.reviews.bookinfo.svc.mesh2-exports.local",
    ] {
        let hello = rustls_client_hello(sni);
        assert_refused(&mut gw, "host_not_exposed", |c| {
            send_tolerating_close(c, &hello)
        });
    }
    reviews.assert_no_connection("reviews is not exported");
}

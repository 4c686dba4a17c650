//! `eastwest run --kube` inside a pod, as far as a pod can be had here: the binary runs in its
//! own mount namespace where `/var/run/secrets/kubernetes.io/serviceaccount` holds a token,
//! `ca.crt` and `namespace`, with `KUBERNETES_SERVICE_HOST`/`PORT` pointing at the API double, and
//! no kubeconfig anywhere. Then kubelet's token rotation: a new token is written into the mounted
//! file, the old one revoked, and the gateway keeps watching with the new one, no restart.
//!
//! Needs root (mount namespaces), as CI has; `unshare` is util-linux, in Debian's base.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use eastwest_kube_double::fixtures;
use eastwest_kube_double::{ApiServer, ApiServerOptions};
use support::{Gateway, Upstream, bin, forwards_to_one_of, wait_until};

/// Where kube-rs (like client-go) reads a pod's service account.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// kube-rs caches a token file for 60 s and re-reads it within 10 s of that; allow for the
/// watcher's backoff on top.
const ROTATION_WAIT: Duration = Duration::from_secs(120);

fn write_atomically(path: &Path, contents: &str) {
    // kubelet's atomic writer swaps a symlink; a rename is the same for a reader.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn in_a_pod_it_uses_the_service_account_and_follows_token_rotation() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(ApiServer::start(ApiServerOptions::default()))
        .unwrap();
    let first = Upstream::bind_at("127.0.0.2:0".parse().unwrap());
    let port = first.addr().port();
    let [svc, slice] = fixtures::local_service("ns", "echo", 80, port, &["127.0.0.2"]);
    rt.block_on(server.apply_all([svc, slice])).unwrap();

    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), server.token()).unwrap();
    std::fs::write(sa.path().join("ca.crt"), server.ca_pem()).unwrap();
    std::fs::write(sa.path().join("namespace"), "istio-system").unwrap();
    let home = tempfile::tempdir().unwrap();

    // A private /run (so the host's is untouched), the service account directory bind-mounted
    // where kube-rs looks, then the gateway.
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p {SA_DIR} && mount --bind \"$0\" {SA_DIR} && \
         exec \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(sa.path())
        .arg(bin())
        .args(["run", "--kube", "--cluster-id", "pod"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--workers", "1", "--log-format", "json"])
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", server.addr().port().to_string())
        .env("HOME", home.path())
        .env_remove("KUBECONFIG");
    let mut gw = Gateway::spawn(cmd);
    gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded");
    let sni = "outbound_.80_._.echo.ns.svc.cluster.local";
    assert_eq!(forwards_to_one_of(&mut gw, &[&first], sni), 0);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.is_open_watch_of("endpointslices")
                && r.user.as_deref() == Some(server.user())),
        "the watches must run as the service account: {requests:?}"
    );

    // Rotation: kubelet writes a new token; the old one stays valid for a while, then expires.
    let rotated_user = "system:serviceaccount:istio-system:rotated";
    server.add_token("rotated-token", rotated_user);
    write_atomically(&sa.path().join("token"), "rotated-token");
    // Each cut watch makes kube-rs open a new one at once; poll (once a second) until one
    // carries the new token. Nothing can be awaited here: the re-read is on kube-rs's clock.
    let deadline = Instant::now() + ROTATION_WAIT;
    let mut watches = 1;
    loop {
        server.drop_watches();
        watches += 1;
        let opened = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    server.wait_for_requests(watches, |r| r.is_open_watch_of("endpointslices")),
                )
                .await
            })
            .expect("the watch is reopened after a cut");
        if opened.last().and_then(|r| r.user.as_deref()) == Some(rotated_user) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated token was not used within {ROTATION_WAIT:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    server.revoke_token(server.token());
    server.drop_watches();

    // A change made now reaches the gateway through the new token's watch.
    let second = Upstream::bind_at("127.0.0.3:0".parse().unwrap());
    let moved = fixtures::endpoint_slice("ns", "echo", "echo-local")
        .ready_addresses(&["127.0.0.3"])
        .tcp_port("tcp", second.addr().port())
        .build();
    rt.block_on(server.apply(moved)).unwrap();
    wait_until("the route moved to 127.0.0.3", || {
        gw.admin_get("/debug/routes").1.contains("127.0.0.3")
    });
    assert_eq!(forwards_to_one_of(&mut gw, &[&first, &second], sni), 1);
    assert!(
        !gw.seen.iter().any(|v| v["kind"] == "unauthorized"),
        "the rotation must not cost an authentication failure: {:?}",
        gw.seen
    );
}

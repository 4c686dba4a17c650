//! The README's first command: `eastwest demo` builds a two-cluster world and checks it.

mod support;

use std::process::Command;

#[test]
fn demo_runs_and_every_check_holds() {
    let out = Command::new(support::bin())
        .arg("demo")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    for expected in [
        "the backend saw the client's own identity spiffe://cluster.local/ns/east/sa/sleep",
        "the backend saw the client's own identity spiffe://cluster.local/ns/west/sa/sleep",
        "both replicas served: west-0 x3, west-1 x3",
        "west-1 received no traffic",
        "refused by the gateway (reason host_not_exposed)",
        "all checks passed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

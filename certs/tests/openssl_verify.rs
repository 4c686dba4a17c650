//! The certificates pass OpenSSL's own chain verification (strict X.509 mode, TLS client and
//! server purposes), and OpenSSL-made CAs like Istio's `Makefile.selfsigned.mk` ones load.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use eastwest_certs::{Ca, PluginFiles, spiffe_id};

const OPENSSL: &str = "/usr/bin/openssl";

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `openssl verify -x509_strict -purpose <purpose> -CAfile root -untrusted chain leaf`.
fn openssl_verify(root: &Path, untrusted: &Path, leaf: &Path, purpose: &str) -> (bool, String) {
    let out = Command::new(OPENSSL)
        .arg("verify")
        .args(["-x509_strict", "-purpose", purpose])
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(leaf)
        .output()
        .expect("run /usr/bin/openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_verifies_workload_through_the_cluster_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let leaf = east
        .workload("spiffe://cluster.local/ns/east/sa/default", &[])
        .unwrap();

    let files = east.plugin_files();
    for (name, contents) in files.files() {
        write(dir.path(), name, contents);
    }
    let root_pem = dir.path().join(PluginFiles::ROOT_CERT);
    let ca_pem = dir.path().join(PluginFiles::CA_CERT);
    let leaf_pem = write(dir.path(), "leaf.pem", leaf.cert_pem());

    for purpose in ["sslserver", "sslclient"] {
        let (ok, out) = openssl_verify(&root_pem, &ca_pem, &leaf_pem, purpose);
        assert!(ok, "{purpose}: {out}");
        assert!(out.contains(": OK"), "{out}");
    }
    // The intermediate alone, and the full workload chain as a TLS peer would send it.
    let (ok, out) = openssl_verify(&root_pem, &root_pem, &ca_pem, "any");
    assert!(ok, "{out}");
    let chain = write(dir.path(), "workload-chain.pem", &leaf.chain_pem());
    let (ok, out) = openssl_verify(&root_pem, &chain, &leaf_pem, "sslclient");
    assert!(ok, "{out}");
}

#[test]
fn openssl_rejects_a_workload_of_another_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    // Same names, different keys: an attacker's look-alike mesh.
    let rogue = Ca::new_root("Istio").unwrap().intermediate("east").unwrap();
    let leaf = rogue
        .workload("spiffe://cluster.local/ns/east/sa/default", &[])
        .unwrap();

    let root_pem = write(dir.path(), "root-cert.pem", root.cert_pem());
    let ca_pem = write(dir.path(), "ca-cert.pem", east.cert_pem());
    let rogue_ca_pem = write(dir.path(), "rogue-ca-cert.pem", rogue.cert_pem());
    let leaf_pem = write(dir.path(), "leaf.pem", leaf.cert_pem());

    // Our intermediate did not sign it (its AKI names another key).
    let (ok, out) = openssl_verify(&root_pem, &ca_pem, &leaf_pem, "sslserver");
    assert!(!ok && out.contains("error 20 at 0 depth"), "{out}");
    // Its own intermediate does not chain to our root.
    let (ok, out) = openssl_verify(&root_pem, &rogue_ca_pem, &leaf_pem, "sslserver");
    assert!(!ok && out.contains("error 20 at 1 depth"), "{out}");
}

/// What `make -f tools/certs/Makefile.selfsigned.mk root-ca` produces (RSA, made by OpenSSL)
/// loads, issues an intermediate and a workload, and OpenSSL accepts the result.
#[test]
fn loads_an_openssl_made_rsa_root() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("root-key.pem");
    let cert = dir.path().join("root-cert.pem");
    let status = Command::new(OPENSSL)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"])
        .args(["-days", "3650", "-subj", "/O=Istio/CN=Root CA"])
        .args(["-addext", "basicConstraints=critical,CA:true"])
        .args([
            "-addext",
            "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,keyCertSign",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");

    let root = Ca::from_pem(
        &std::fs::read_to_string(&cert).unwrap(),
        &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap();
    assert_eq!(root.subject(), "O=Istio, CN=Root CA");
    let west = root.intermediate("west").unwrap();
    let leaf = west
        .workload("spiffe://cluster.local/ns/west/sa/default", &[])
        .unwrap();
    assert_eq!(
        spiffe_id(&leaf.cert_der()).as_deref(),
        Some("spiffe://cluster.local/ns/west/sa/default")
    );

    let ca_pem = write(dir.path(), "ca-cert.pem", west.cert_pem());
    let leaf_pem = write(dir.path(), "leaf.pem", leaf.cert_pem());
    let (ok, out) = openssl_verify(&cert, &ca_pem, &leaf_pem, "sslclient");
    assert!(ok, "{out}");
}

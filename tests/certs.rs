//! `eastwest certs` as an operator runs it: the real binary writes a root, two clusters'
//! intermediates and their workload certificates into directories, and tools nobody here wrote
//! judge the files — `openssl verify` and `openssl x509` the chains and extensions, `kubectl`
//! the `cacerts` Secret manifest, rustls a mutual-TLS handshake across the clusters on loopback.
//! Also: file modes, refusing to overwrite, what the errors say, and roots made by openssl the
//! way Istio's `Makefile.selfsigned.mk` makes them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eastwest_certs::{
    CertificateDer, PrivateKeyDer, ServerName, certs_from_pem, key_from_pem, spiffe_id,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const EAST_ID: &str = "spiffe://cluster.local/ns/east/sa/default";
const WEST_ID: &str = "spiffe://cluster.local/ns/west/sa/default";
/// The west workload's DNS SAN: the name the east client expects the server to carry.
const WEST_DNS: &str = "west.west.svc.cluster.local";

/// The files `eastwest certs` writes (Istio's names).
const ROOT_CERT: &str = "root-cert.pem";
const ROOT_KEY: &str = "root-key.pem";
const CA_CERT: &str = "ca-cert.pem";
const CA_KEY: &str = "ca-key.pem";
const CERT_CHAIN: &str = "cert-chain.pem";
const LEAF_CERT: &str = "cert.pem";
const LEAF_KEY: &str = "key.pem";
const SECRET_YAML: &str = "cacerts.yaml";

/// How long a loopback exchange may take before the test fails (a bound, not a wait).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

const DAY: u64 = 24 * 60 * 60;

// ---- The world the read-only tests share ----

/// A two-cluster mesh made with the CLI, and two strangers from other roots. Built once per
/// run: its RSA 4096 root takes seconds to generate.
struct World {
    /// RSA 4096 root.
    root: PathBuf,
    /// ECDSA P-256 intermediate, in the default place (`ROOT/east`).
    east: PathBuf,
    /// RSA 2048 intermediate (`ROOT/west`).
    west: PathBuf,
    /// ECDSA workload `EAST_ID`, from `east`.
    east_leaf: PathBuf,
    /// RSA 2048 workload `WEST_ID` with the DNS SAN `WEST_DNS`, from `west`.
    west_leaf: PathBuf,
    /// A root of another organisation (`--org Elsewhere`), and a workload `EAST_ID` from its
    /// own `east` intermediate.
    elsewhere_root: PathBuf,
    elsewhere_leaf: PathBuf,
    /// A root named exactly like ours (`O=Istio, CN=Root CA`, as every default root is), and a
    /// workload `EAST_ID` from its own `east` intermediate: the same names, the wrong keys.
    lookalike_root: PathBuf,
    lookalike_leaf: PathBuf,
    _dir: TempDir,
}

/// Worlds are kept in target/tmp (statics are never dropped; `cargo clean` empties it) to be
/// inspected after a failure. Those older than this belong to finished runs, never to one
/// running concurrently, and are removed.
const STALE_WORLD: Duration = Duration::from_secs(60 * 60);

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        remove_stale_worlds();
        let dir = tempfile::Builder::new()
            .prefix("certs-world-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create the world's directory");
        let top = dir.path();
        let root = new_root(top, "root", &["--key-type", "rsa-4096"]);
        let east = new_intermediate(&root, "east", &[]);
        let west = new_intermediate(&root, "west", &["--key-type", "rsa-2048"]);
        let east_leaf = top.join("east-leaf");
        new_workload(&east, EAST_ID, &east_leaf, &[]);
        let west_leaf = top.join("west-leaf");
        new_workload(
            &west,
            WEST_ID,
            &west_leaf,
            &["--dns", WEST_DNS, "--key-type", "rsa-2048"],
        );
        let stranger = |name: &str, org: &str| {
            let root = new_root(top, &format!("{name}-root"), &["--org", org]);
            let leaf = top.join(format!("{name}-leaf"));
            new_workload(&new_intermediate(&root, "east", &[]), EAST_ID, &leaf, &[]);
            (root, leaf)
        };
        let (elsewhere_root, elsewhere_leaf) = stranger("elsewhere", "Elsewhere");
        let (lookalike_root, lookalike_leaf) = stranger("lookalike", "Istio");
        World {
            root,
            east,
            west,
            east_leaf,
            west_leaf,
            elsewhere_root,
            elsewhere_leaf,
            lookalike_root,
            lookalike_leaf,
            _dir: dir,
        }
    })
}

fn remove_stale_worlds() {
    let Ok(entries) = fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("certs-world-")
        {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_WORLD)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

// ---- Running the binary and the tools ----

/// `eastwest certs ARGS`, run to its exit.
fn certs(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eastwest"));
    cmd.arg("certs").args(args);
    run(cmd)
}

/// `eastwest certs ARGS`, which must succeed.
fn certs_ok(args: &[&str]) {
    let out = certs(args);
    assert!(
        out.status.success(),
        "`eastwest certs {}` failed ({}):\n{}",
        args.join(" "),
        out.status,
        stderr(&out)
    );
}

/// `eastwest certs ARGS`, which must exit with `code`; what it printed on stderr.
fn certs_fails(args: &[&str], code: i32) -> String {
    let out = certs(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "`eastwest certs {}` should exit {code}; stdout:\n{}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    stderr(&out)
}

/// `eastwest certs root --out PARENT/NAME EXTRA...`, which must succeed; the directory. Without
/// `--key-type` in `extra` the key is ECDSA, generated in a millisecond.
fn new_root(parent: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = parent.join(name);
    certs_ok(&[&["root", "--out", s(&out)], extra].concat());
    out
}

/// `eastwest certs intermediate --root ROOT --cluster CLUSTER EXTRA...`, which must succeed;
/// the directory it wrote into by default, `ROOT/CLUSTER`.
fn new_intermediate(root: &Path, cluster: &str, extra: &[&str]) -> PathBuf {
    let args = ["intermediate", "--root", s(root), "--cluster", cluster];
    certs_ok(&[&args[..], extra].concat());
    root.join(cluster)
}

/// `eastwest certs workload --ca CA --spiffe ID --out OUT EXTRA...`, which must succeed.
fn new_workload(ca: &Path, id: &str, out: &Path, extra: &[&str]) {
    let args = ["workload", "--ca", s(ca), "--spiffe", id, "--out", s(out)];
    certs_ok(&[&args[..], extra].concat());
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line argument (test paths are UTF-8).
fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The `name` program: `$env_var` if set, else the first on PATH; a failure saying how to
/// install it if there is none.
fn tool(name: &str, env_var: &str, install: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "${env_var} is {path:?}, not a file: {install}"
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not on PATH (nor in ${env_var}); these tests need it: {install}")
        })
}

fn openssl(args: &[&str]) -> Output {
    let mut cmd = Command::new(tool("openssl", "OPENSSL", "apt-get install openssl"));
    cmd.args(args);
    run(cmd)
}

/// `openssl ARGS`, which must succeed; its stdout.
fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "`openssl {}` failed:\n{}",
        args.join(" "),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify -x509_strict` of `cert` with only `root` trusted and `chain` as untrusted
/// intermediates (as a peer receives them), plus `extra` such as `-purpose sslserver`.
fn openssl_verify(root: &Path, chain: &Path, cert: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-CAfile",
        s(root),
        "-untrusted",
        s(chain),
    ];
    args.extend_from_slice(extra);
    args.push(s(cert));
    openssl(&args)
}

fn assert_verifies(root: &Path, chain: &Path, cert: &Path, extra: &[&str]) {
    let out = openssl_verify(root, chain, cert, extra);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with(": OK"),
        "openssl verify {extra:?} of {} against {} failed:\n{stdout}{}",
        cert.display(),
        root.display(),
        stderr(&out)
    );
}

/// `kubectl ARGS` in `dir`, which must succeed; its stdout. It is pointed at a kubeconfig that
/// does not exist, so it cannot reach any cluster.
fn kubectl_ok(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(tool(
        "kubectl",
        "KUBECTL",
        "apt-get install kubernetes-client",
    ));
    cmd.args(args)
        .current_dir(dir)
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"));
    let out = run(cmd);
    assert!(
        out.status.success(),
        "`kubectl {}` failed:\n{}",
        args.join(" "),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

/// The names in `dir`, sorted (hidden ones too, so a leftover temporary file shows).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---- Reading `openssl x509 -text` ----

/// `openssl x509 -noout -text` of one certificate file, with lookups of what it printed.
struct CertText {
    path: PathBuf,
    text: String,
}

/// One X.509v3 extension as openssl prints it.
struct Ext {
    critical: bool,
    /// The line under the extension's name, trimmed.
    value: String,
}

impl CertText {
    fn of(path: &Path) -> CertText {
        CertText {
            path: path.to_owned(),
            text: openssl_ok(&["x509", "-noout", "-text", "-in", s(path)]),
        }
    }

    /// The extension `X509v3 <name>`; fails the test if it is missing.
    fn ext(&self, name: &str) -> Ext {
        let header = format!("X509v3 {name}:");
        let mut lines = self.text.lines();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.trim().strip_prefix(&header) {
                return Ext {
                    critical: rest.trim() == "critical",
                    value: lines.next().unwrap_or_default().trim().to_owned(),
                };
            }
        }
        panic!("{} has no {name}:\n{}", self.path.display(), self.text)
    }

    /// The rest of the first line starting with `label` (e.g. `Subject:`).
    fn field(&self, label: &str) -> &str {
        self.text
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{} has no {label}:\n{}", self.path.display(), self.text))
    }

    fn ski(&self) -> String {
        key_id(&self.ext("Subject Key Identifier").value)
    }

    fn aki(&self) -> String {
        key_id(&self.ext("Authority Key Identifier").value)
    }

    fn assert_contains(&self, needle: &str) {
        assert!(
            self.text.contains(needle),
            "{} should show {needle:?}:\n{}",
            self.path.display(),
            self.text
        );
    }
}

/// A key identifier as openssl prints it (OpenSSL 1.1 prefixes the AKI with `keyid:`).
fn key_id(value: &str) -> String {
    let id = value
        .strip_prefix("keyid:")
        .unwrap_or(value)
        .to_ascii_uppercase();
    assert!(
        id.len() >= 20 && id.split(':').all(|b| b.len() == 2),
        "not a key identifier: {value:?}"
    );
    id
}

/// Whether `cert` expires within `seconds` from now (`openssl x509 -checkend`).
fn expires_within(cert: &Path, seconds: u64) -> bool {
    let out = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &seconds.to_string(),
        "-in",
        s(cert),
    ]);
    !out.status.success()
}

fn enddate(cert: &Path) -> String {
    openssl_ok(&["x509", "-noout", "-enddate", "-in", s(cert)])
}

// ---- 1. The chains verify with openssl ----

#[test]
fn openssl_verifies_both_intermediates_and_both_leaves_against_the_shared_root() {
    let w = world();
    let root = w.root.join(ROOT_CERT);
    for ca in [&w.east, &w.west] {
        assert_verifies(&root, &ca.join(CERT_CHAIN), &ca.join(CA_CERT), &[]);
    }
    for leaf in [&w.east_leaf, &w.west_leaf] {
        for purpose in ["sslclient", "sslserver"] {
            let (chain, cert) = (leaf.join(CERT_CHAIN), leaf.join(LEAF_CERT));
            assert_verifies(&root, &chain, &cert, &["-purpose", purpose]);
        }
    }
}

#[test]
fn chains_are_in_istio_order_and_every_directory_holds_the_same_root() {
    let w = world();
    let root = read(&w.root.join(ROOT_CERT));
    for ca in [&w.east, &w.west] {
        assert_eq!(read(&ca.join(ROOT_CERT)), root, "{}", ca.display());
        let intermediate_then_root = read(&ca.join(CA_CERT)) + &root;
        assert_eq!(read(&ca.join(CERT_CHAIN)), intermediate_then_root);
    }
    for (leaf, ca) in [(&w.east_leaf, &w.east), (&w.west_leaf, &w.west)] {
        assert_eq!(read(&leaf.join(ROOT_CERT)), root, "{}", leaf.display());
        let leaf_then_intermediate = read(&leaf.join(LEAF_CERT)) + &read(&ca.join(CA_CERT));
        assert_eq!(read(&leaf.join(CERT_CHAIN)), leaf_then_intermediate);
    }
}

#[test]
fn a_workload_issued_straight_from_a_root_chains_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let leaf = dir.path().join("leaf");
    new_workload(&root, WEST_ID, &leaf, &["--dns", WEST_DNS]);
    let (chain, cert) = (leaf.join(CERT_CHAIN), leaf.join(LEAF_CERT));
    // No intermediate: the chain is the leaf alone.
    assert_eq!(read(&chain), read(&cert));
    assert_eq!(read(&leaf.join(ROOT_CERT)), read(&root.join(ROOT_CERT)));
    let root_cert = root.join(ROOT_CERT);
    assert_verifies(&root_cert, &chain, &cert, &["-purpose", "sslserver"]);
    assert_eq!(CertText::of(&cert).aki(), CertText::of(&root_cert).ski());
}

#[test]
fn a_leaf_does_not_verify_against_another_root() {
    let w = world();
    let cases = [
        (&w.east_leaf, &w.elsewhere_root),
        (&w.east_leaf, &w.lookalike_root),
        (&w.elsewhere_leaf, &w.root),
        (&w.lookalike_leaf, &w.root),
    ];
    for (leaf, root) in cases {
        let (chain, cert) = (leaf.join(CERT_CHAIN), leaf.join(LEAF_CERT));
        let out = openssl_verify(&root.join(ROOT_CERT), &chain, &cert, &[]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        assert!(
            !out.status.success() && !said.trim_end().ends_with(": OK"),
            "{} should not verify against {}:\n{said}",
            leaf.display(),
            root.display()
        );
    }
}

// ---- 2. What the certificates say ----

#[test]
fn root_is_a_ca_without_a_path_length_limit() {
    let root = CertText::of(&world().root.join(ROOT_CERT));
    let bc = root.ext("Basic Constraints");
    assert!(bc.critical);
    assert_eq!(bc.value, "CA:TRUE", "no pathlen on the root");
    let ku = root.ext("Key Usage");
    assert!(ku.critical);
    assert!(
        ku.value.contains("Certificate Sign, CRL Sign"),
        "{}",
        ku.value
    );
    root.ski();
    assert_eq!(root.field("Subject:"), "O = Istio, CN = Root CA");
}

#[test]
fn intermediates_are_pathlen_0_cas_named_after_their_cluster_and_issued_by_the_root() {
    let w = world();
    let root_ski = CertText::of(&w.root.join(ROOT_CERT)).ski();
    for (dir, cluster) in [(&w.east, "east"), (&w.west, "west")] {
        let ca = CertText::of(&dir.join(CA_CERT));
        let bc = ca.ext("Basic Constraints");
        assert!(bc.critical);
        assert_eq!(bc.value, "CA:TRUE, pathlen:0");
        let ku = ca.ext("Key Usage");
        assert!(ku.critical && ku.value.contains("Certificate Sign, CRL Sign"));
        assert_eq!(ca.aki(), root_ski, "{cluster}'s AKI is the root's SKI");
        assert_ne!(ca.ski(), root_ski);
        let subject = ca.field("Subject:");
        assert!(subject.contains(&format!("L = {cluster}")), "{subject}");
        assert!(subject.contains("O = Istio"), "{subject}");
        assert_eq!(ca.field("Issuer:"), "O = Istio, CN = Root CA");
    }
}

#[test]
fn org_names_the_root_and_its_intermediates_inherit_it() {
    let root = &world().elsewhere_root;
    let subject = CertText::of(&root.join(ROOT_CERT))
        .field("Subject:")
        .to_owned();
    assert_eq!(subject, "O = Elsewhere, CN = Root CA");
    let ca = CertText::of(&root.join("east").join(CA_CERT));
    assert!(
        ca.field("Subject:").contains("O = Elsewhere"),
        "{}",
        ca.text
    );
}

#[test]
fn leaves_carry_the_spiffe_id_tls_usages_and_their_intermediates_key_id() {
    let w = world();
    // keyEncipherment only for RSA keys: RFC 5480 forbids it on ECDSA keys.
    let cases = [
        (&w.east_leaf, &w.east, EAST_ID, "Digital Signature"),
        (
            &w.west_leaf,
            &w.west,
            WEST_ID,
            "Digital Signature, Key Encipherment",
        ),
    ];
    for (dir, ca, id, key_usage) in cases {
        let leaf = CertText::of(&dir.join(LEAF_CERT));
        let bc = leaf.ext("Basic Constraints");
        assert!(bc.critical);
        assert_eq!(bc.value, "CA:FALSE");
        let san = leaf.ext("Subject Alternative Name").value;
        assert!(san.contains(&format!("URI:{id}")), "{san}");
        let eku = leaf.ext("Extended Key Usage").value;
        assert_eq!(
            eku,
            "TLS Web Server Authentication, TLS Web Client Authentication"
        );
        let ku = leaf.ext("Key Usage");
        assert!(ku.critical);
        assert_eq!(ku.value, key_usage, "{}", dir.display());
        assert_eq!(leaf.aki(), CertText::of(&ca.join(CA_CERT)).ski());
    }
    let san = |dir: &Path| {
        let cert = CertText::of(&dir.join(LEAF_CERT));
        cert.ext("Subject Alternative Name").value
    };
    assert!(san(&w.west_leaf).contains(&format!("DNS:{WEST_DNS}")));
    assert!(!san(&w.east_leaf).contains("DNS:"));
}

#[test]
fn key_sizes_and_signature_algorithms_follow_the_key_types() {
    let w = world();
    const RSA: &str = "sha256WithRSAEncryption";
    const ECDSA: &str = "ecdsa-with-SHA256";
    // (certificate, its key, the signature its issuer made)
    let cases = [
        (w.root.join(ROOT_CERT), "(4096 bit)", RSA),
        (w.east.join(CA_CERT), "(256 bit)", RSA),
        (w.west.join(CA_CERT), "(2048 bit)", RSA),
        (w.east_leaf.join(LEAF_CERT), "(256 bit)", ECDSA),
        (w.west_leaf.join(LEAF_CERT), "(2048 bit)", RSA),
    ];
    for (path, size, signature) in cases {
        let cert = CertText::of(&path);
        cert.assert_contains(&format!("Public-Key: {size}"));
        let algorithm = cert.field("Signature Algorithm:");
        assert_eq!(algorithm, signature, "{}", path.display());
    }
    let east = CertText::of(&w.east.join(CA_CERT));
    east.assert_contains("id-ecPublicKey");
    east.assert_contains("P-256");
}

#[test]
fn days_sets_a_workloads_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_intermediate(&new_root(dir.path(), "root", &[]), "c1", &[]);
    let out = dir.path().join("leaf");
    new_workload(&ca, EAST_ID, &out, &["--days", "10"]);
    let cert = out.join(LEAF_CERT);
    assert!(!expires_within(&cert, 9 * DAY), "{}", enddate(&cert));
    assert!(expires_within(&cert, 11 * DAY), "{}", enddate(&cert));
}

#[test]
fn a_workload_never_outlives_its_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_intermediate(&new_root(dir.path(), "root", &[]), "c1", &["--days", "2"]);
    let out = dir.path().join("leaf");
    new_workload(&ca, EAST_ID, &out, &["--days", "10"]);
    let leaf = out.join(LEAF_CERT);
    assert_eq!(enddate(&leaf), enddate(&ca.join(CA_CERT)));
    assert!(expires_within(&leaf, 3 * DAY), "{}", enddate(&leaf));
}

// ---- 3. Files: modes, never overwriting by accident ----

#[test]
fn private_keys_are_0600_even_under_umask_000_and_certificates_are_not_writable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let (root, leaf) = (dir.path().join("root"), dir.path().join("leaf"));
    let ca = root.join("c1");
    // What an operator with the most permissive umask would type.
    let script = r#"umask 000 &&
        "$0" certs root --out "$1" &&
        "$0" certs intermediate --root "$1" --cluster c1 --secret-yaml &&
        "$0" certs workload --ca "$1/c1" --spiffe "$3" --out "$2""#;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, env!("CARGO_BIN_EXE_eastwest")])
        .args([s(&root), s(&leaf), EAST_ID]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));

    let secrets = [
        root.join(ROOT_KEY),
        ca.join(CA_KEY),
        ca.join(SECRET_YAML),
        leaf.join(LEAF_KEY),
    ];
    for path in &secrets {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    let public = [
        root.join(ROOT_CERT),
        ca.join(CA_CERT),
        ca.join(CERT_CHAIN),
        ca.join(ROOT_CERT),
        leaf.join(LEAF_CERT),
        leaf.join(CERT_CHAIN),
        leaf.join(ROOT_CERT),
    ];
    for path in &public {
        let mode = mode(path);
        assert_eq!(mode & 0o022, 0, "{} is {mode:o}", path.display());
    }
    // Nothing else, no temporary file left behind.
    let all = [CA_CERT, CA_KEY, SECRET_YAML, CERT_CHAIN, ROOT_CERT];
    assert_eq!(names(&ca), all);
    assert_eq!(names(&leaf), [CERT_CHAIN, LEAF_CERT, LEAF_KEY, ROOT_CERT]);
}

#[test]
fn an_existing_root_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let before = (read(&root.join(ROOT_CERT)), read(&root.join(ROOT_KEY)));

    let err = certs_fails(&["root", "--out", s(&root)], 1);
    for name in [ROOT_CERT, ROOT_KEY] {
        assert!(err.contains(s(&root.join(name))), "{err}");
    }
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("--force"), "{err}");
    let after = (read(&root.join(ROOT_CERT)), read(&root.join(ROOT_KEY)));
    assert_eq!(after, before);
    assert_eq!(names(&root), [ROOT_CERT, ROOT_KEY]);
}

#[test]
fn force_replaces_the_root_and_the_new_key_is_0600_whatever_the_old_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let before = (read(&root.join(ROOT_CERT)), read(&root.join(ROOT_KEY)));
    fs::set_permissions(root.join(ROOT_KEY), fs::Permissions::from_mode(0o644)).unwrap();

    certs_ok(&["root", "--out", s(&root), "--force"]);
    assert_ne!(read(&root.join(ROOT_CERT)), before.0);
    assert_ne!(read(&root.join(ROOT_KEY)), before.1);
    assert_eq!(mode(&root.join(ROOT_KEY)), 0o600);
    assert_eq!(names(&root), [ROOT_CERT, ROOT_KEY]);
}

#[test]
fn one_existing_target_means_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let out = dir.path().join("c1");
    fs::create_dir(&out).unwrap();
    fs::write(out.join(CA_KEY), "an operator's key\n").unwrap();

    let args = ["intermediate", "--root", s(&root), "--cluster", "c1"];
    let err = certs_fails(
        &[&args[..], &["--out", s(&out), "--secret-yaml"]].concat(),
        1,
    );
    assert!(err.contains(s(&out.join(CA_KEY))), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(names(&out), [CA_KEY]);
    assert_eq!(read(&out.join(CA_KEY)), "an operator's key\n");
}

// ---- 4. The `cacerts` Secret manifest ----

/// A manifest's lines, sorted, without `creationTimestamp` (kubectl versions differ on it).
fn manifest_lines(yaml: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.contains("creationTimestamp"))
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn secret_yaml_is_what_kubectl_create_secret_prints() {
    for namespace in ["istio-system", "istio-east"] {
        let dir = tempfile::tempdir().unwrap();
        let root = new_root(dir.path(), "root", &[]);
        let extra = ["--secret-yaml", "--secret-namespace", namespace];
        let ca = new_intermediate(&root, "c1", &extra);
        let kubectl = kubectl_ok(
            &ca,
            &[
                "create",
                "secret",
                "generic",
                "cacerts",
                "-n",
                namespace,
                "--from-file=ca-cert.pem",
                "--from-file=ca-key.pem",
                "--from-file=root-cert.pem",
                "--from-file=cert-chain.pem",
                "--dry-run=client",
                "-o",
                "yaml",
            ],
        );
        let ours = read(&ca.join(SECRET_YAML));
        assert_eq!(
            manifest_lines(&ours),
            manifest_lines(&kubectl),
            "ours:\n{ours}\nkubectl's:\n{kubectl}"
        );
    }
}

#[test]
fn secret_yaml_data_decodes_to_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_intermediate(&new_root(dir.path(), "root", &[]), "c1", &["--secret-yaml"]);
    let yaml = read(&ca.join(SECRET_YAML));
    let data: Vec<(&str, &str)> = yaml
        .lines()
        .skip_while(|l| *l != "data:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            l.trim()
                .split_once(": ")
                .expect("`name: base64` under data")
        })
        .collect();
    let keys: Vec<&str> = data.iter().map(|(name, _)| *name).collect();
    assert_eq!(keys, [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT]);
    for (name, encoded) in data {
        let encoded_file = dir.path().join(format!("{name}.b64"));
        fs::write(&encoded_file, encoded).unwrap();
        let decoded = openssl_ok(&["base64", "-d", "-A", "-in", s(&encoded_file)]);
        assert_eq!(decoded, read(&ca.join(name)), "{name}");
    }
}

#[test]
fn an_invalid_secret_namespace_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let args = ["intermediate", "--root", s(&root), "--cluster", "c1"];
    let bad = ["--secret-yaml", "--secret-namespace", "Bad_NS"];
    let err = certs_fails(&[&args[..], &bad].concat(), 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("--secret-namespace"), "{err}");
    assert!(err.contains("Bad_NS"), "{err}");
    assert!(!root.join("c1").exists(), "the out dir was created");
    assert_eq!(names(&root), [ROOT_CERT, ROOT_KEY]);
}

#[test]
fn a_cluster_name_that_would_leave_the_root_dir_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    for bad in ["", "..", "../escape", "a/b", ".hidden", "east west"] {
        let err = certs_fails(&["intermediate", "--root", s(&root), "--cluster", bad], 1);
        assert!(err.starts_with("error: --cluster"), "{bad:?}: {err}");
        assert_eq!(names(&root), [ROOT_CERT, ROOT_KEY], "{bad:?}");
        assert_eq!(names(dir.path()), ["root"], "{bad:?}");
    }
}

// ---- 5. Errors name the file and why ----

#[test]
fn intermediate_from_an_empty_dir_names_root_cert_pem_and_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["intermediate", "--root", s(dir.path()), "--cluster", "c1"];
    let err = certs_fails(&args, 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(s(&dir.path().join(ROOT_CERT))), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(names(dir.path()).is_empty());
}

/// A root directory holding one root's certificate and another root's key.
fn mismatched_root(parent: &Path) -> PathBuf {
    let a = new_root(parent, "a", &[]);
    let b = new_root(parent, "b", &[]);
    let mixed = parent.join("mixed");
    fs::create_dir(&mixed).unwrap();
    fs::copy(a.join(ROOT_CERT), mixed.join(ROOT_CERT)).unwrap();
    fs::copy(b.join(ROOT_KEY), mixed.join(ROOT_KEY)).unwrap();
    mixed
}

#[test]
fn a_key_from_another_root_is_blamed_on_root_key_pem() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = mismatched_root(dir.path());
    let err = certs_fails(&["intermediate", "--root", s(&mixed), "--cluster", "c1"], 1);
    assert!(err.contains(s(&mixed.join(ROOT_KEY))), "{err}");
    assert!(err.contains("does not belong"), "{err}");
    assert!(!mixed.join("c1").exists());
}

#[test]
fn workload_from_a_dir_without_a_ca_says_it_holds_no_ca() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("leaf");
    let args = ["workload", "--ca", s(dir.path()), "--spiffe", EAST_ID];
    let err = certs_fails(&[&args[..], &["--out", s(&out)]].concat(), 1);
    assert!(err.contains("holds no CA"), "{err}");
    assert!(err.contains(CA_KEY) && err.contains(ROOT_KEY), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_invalid_spiffe_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = new_root(dir.path(), "root", &[]);
    let out = dir.path().join("leaf");
    let args = ["workload", "--ca", s(&root), "--spiffe", "not-a-spiffe-id"];
    let err = certs_fails(&[&args[..], &["--out", s(&out)]].concat(), 1);
    assert!(err.contains("invalid SPIFFE ID"), "{err}");
    assert!(err.contains("not-a-spiffe-id"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_unknown_key_type_is_a_usage_error_listing_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("root");
    let err = certs_fails(&["root", "--out", s(&out), "--key-type", "rsa-1024"], 2);
    assert!(err.contains("rsa-1024"), "{err}");
    for valid in ["ecdsa-p256", "rsa-2048", "rsa-4096"] {
        assert!(err.contains(valid), "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn error_messages_give_each_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = certs_fails(&["intermediate", "--root", s(&empty), "--cluster", "c1"], 1);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let mixed = mismatched_root(dir.path());
    let err = certs_fails(&["intermediate", "--root", s(&mixed), "--cluster", "c1"], 1);
    assert_eq!(err.matches("does not belong").count(), 1, "{err}");
}

// ---- 6. Roots made by openssl, as Istio's Makefile makes them ----

#[test]
fn intermediate_from_a_root_made_by_openssl_like_istios_makefile() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let (key, cert) = (root.join(ROOT_KEY), root.join(ROOT_CERT));
    openssl_ok(&["genrsa", "-traditional", "-out", s(&key), "2048"]);
    assert!(
        read(&key).starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "openssl should have written a PKCS#1 key"
    );
    openssl_ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        s(&key),
        "-days",
        "3650",
        "-subj",
        "/O=Istio/CN=Root CA",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        s(&cert),
    ]);

    let ca = new_intermediate(&root, "c1", &[]);
    assert_verifies(&cert, &ca.join(CERT_CHAIN), &ca.join(CA_CERT), &[]);
    let text = CertText::of(&ca.join(CA_CERT));
    let subject = text.field("Subject:");
    assert!(
        subject.contains("O = Istio") && subject.contains("L = c1"),
        "{subject}"
    );
    assert_eq!(
        text.field("Signature Algorithm:"),
        "sha256WithRSAEncryption"
    );

    let leaf = dir.path().join("leaf");
    new_workload(&ca, EAST_ID, &leaf, &[]);
    let (chain, leaf_cert) = (leaf.join(CERT_CHAIN), leaf.join(LEAF_CERT));
    assert_verifies(&cert, &chain, &leaf_cert, &["-purpose", "sslclient"]);
}

// ---- 7. Mutual TLS across the clusters from the written files ----

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn trust(root_cert: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(&read(root_cert)).expect("root-cert.pem") {
        roots
            .add(cert)
            .expect("root-cert.pem is a usable trust anchor");
    }
    Arc::new(roots)
}

/// What a workload directory presents: cert-chain.pem and key.pem.
fn identity(leaf: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = certs_from_pem(&read(&leaf.join(CERT_CHAIN))).expect("cert-chain.pem");
    let key = key_from_pem(&read(&leaf.join(LEAF_KEY))).expect("key.pem");
    (chain, key)
}

/// A sidecar's inbound side: presents `leaf`'s files and requires a client certificate
/// chaining to `leaf`'s root-cert.pem.
fn server_config(leaf: &Path) -> ServerConfig {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(trust(&leaf.join(ROOT_CERT)), provider())
            .build()
            .expect("client verifier");
    let (chain, key) = identity(leaf);
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config from the files")
}

/// A sidecar's outbound side: presents `leaf`'s files, trusts only `root_cert`.
fn client_config(leaf: &Path, root_cert: &Path) -> ClientConfig {
    let (chain, key) = identity(leaf);
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(trust(root_cert))
        .with_client_auth_cert(chain, key)
        .expect("client config from the files")
}

const PING: &[u8] = b"hello west, this is east";
const PONG: &[u8] = b"hello east";

/// The peer's certificate chain and the bytes read from it.
type Seen = (Vec<CertificateDer<'static>>, Vec<u8>);

/// One mTLS connection over loopback: the client sends PING, the server answers PONG and
/// closes. Each side's outcome.
async fn exchange(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> (io::Result<Seen>, io::Result<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));
    let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
    let server = async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer = peer_chain(tls.get_ref().1);
        let mut ping = vec![0; PING.len()];
        tls.read_exact(&mut ping).await?;
        tls.write_all(PONG).await?;
        tls.shutdown().await?;
        Ok((peer, ping))
    };
    let client = async move {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(server_name, tcp).await?;
        let peer = peer_chain(tls.get_ref().1);
        tls.write_all(PING).await?;
        tls.flush().await?;
        let mut pong = Vec::new();
        tls.read_to_end(&mut pong).await?;
        Ok((peer, pong))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, async { tokio::join!(server, client) })
        .await
        .expect("the exchange finishes")
}

fn peer_chain(tls: &rustls::CommonState) -> Vec<CertificateDer<'static>> {
    tls.peer_certificates().unwrap_or_default().to_vec()
}

fn der(path: &Path) -> CertificateDer<'static> {
    certs_from_pem(&read(path))
        .expect("a certificate")
        .remove(0)
}

#[tokio::test]
async fn east_and_west_leaves_do_mutual_tls_from_the_written_files() {
    let w = world();
    let (server, client) = exchange(
        server_config(&w.west_leaf),
        client_config(&w.east_leaf, &w.east_leaf.join(ROOT_CERT)),
        WEST_DNS,
    )
    .await;
    let (client_chain, ping) = server.expect("the west server accepts the east client");
    let (server_chain, pong) = client.expect("the east client accepts the west server");
    assert_eq!(ping, PING);
    assert_eq!(pong, PONG);

    // Each side saw the other's whole cert-chain.pem: leaf, then its cluster's intermediate.
    assert_eq!(
        client_chain,
        [
            der(&w.east_leaf.join(LEAF_CERT)),
            der(&w.east.join(CA_CERT))
        ]
    );
    assert_eq!(
        server_chain,
        [
            der(&w.west_leaf.join(LEAF_CERT)),
            der(&w.west.join(CA_CERT))
        ]
    );
    assert_eq!(spiffe_id(&client_chain[0]).as_deref(), Some(EAST_ID));
    assert_eq!(spiffe_id(&server_chain[0]).as_deref(), Some(WEST_ID));
}

/// Connects a stranger (its own leaf, trusting the mesh's public root so that it accepts the
/// server) to the west server; both sides' errors, as rustls reports them.
async fn stranger_to_west(stranger: &Path) -> (rustls::Error, rustls::Error) {
    let w = world();
    let (server, client) = exchange(
        server_config(&w.west_leaf),
        client_config(stranger, &w.root.join(ROOT_CERT)),
        WEST_DNS,
    )
    .await;
    let server = server.expect_err("the west server must refuse the stranger");
    let client = client.expect_err("the stranger's connection must fail");
    let rustls_error = |side: &str, err: io::Error| {
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        inner
            .cloned()
            .unwrap_or_else(|| panic!("{side}: not a TLS error: {err}"))
    };
    (
        rustls_error("server", server),
        rustls_error("client", client),
    )
}

#[tokio::test]
async fn a_leaf_from_another_root_is_refused_by_the_west_server() {
    let (server, client) = stranger_to_west(&world().elsewhere_leaf).await;
    assert_eq!(
        server,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    assert_eq!(
        client,
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );
}

#[tokio::test]
async fn a_leaf_from_a_root_named_like_ours_is_refused_by_the_west_server() {
    // webpki finds our root by the shared name, and the stranger's intermediate's signature
    // does not check against our root's key (which error depends on the two keys' types).
    let (server, client) = stranger_to_west(&world().lookalike_leaf).await;
    assert!(
        matches!(server, rustls::Error::InvalidCertificate(_)),
        "server: {server}"
    );
    assert!(
        matches!(client, rustls::Error::AlertReceived(_)),
        "client: {client}"
    );
}

//! The real mutual-TLS check: `openssl s_server` as the backend, requiring a client
//! certificate, and `openssl s_client` through each proxy with a certificate of the same CA,
//! both with keys and certificates openssl made (no code of ours on either end of the TLS).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::procs::{self, Proc};

pub struct Server {
    _proc: Proc,
    pub addr: SocketAddr,
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA and two leaves signed by it (SPIFFE URIs as Istio's workload certificates carry).
fn make_certs(dir: &Path) -> Result<(), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/O=bench/CN=bench root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca)?;
    for who in ["server", "client"] {
        let ext = format!(
            "subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/{who}\nextendedKeyUsage=serverAuth,clientAuth\n"
        );
        std::fs::write(dir.join(format!("{who}.ext")), ext).map_err(|e| e.to_string())?;
        let (key, csr, pem, extf) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/O=bench/CN=bench"]);
        openssl(dir, &req)?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &extf,
            ],
        )?;
    }
    Ok(())
}

impl Server {
    /// Makes the certificates in `dir` and starts `s_server -Verify 1 -verify_return_error
    /// -www` on 127.0.0.4: it answers each verified connection with its status page.
    pub fn start(dir: &Path) -> Result<Server, String> {
        make_certs(dir)?;
        let port = procs::free_port().map_err(|e| e.to_string())?;
        let addr: SocketAddr = ([127, 0, 0, 4], port).into();
        let log = std::fs::File::create(dir.join("s_server.log")).map_err(|e| e.to_string())?;
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &addr.to_string(),
                "-cert",
                "server.pem",
            ])
            .args(["-key", "server.key", "-CAfile", "ca.pem", "-Verify", "1"])
            .args(["-verify_return_error", "-www", "-quiet"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("openssl s_server: {e}"))?;
        let mut proc = Proc::from_child(child);
        procs::wait_listening(&mut proc, addr, std::time::Duration::from_secs(10))
            .map_err(|e| format!("openssl s_server: {e}"))?;
        Ok(Server {
            _proc: proc,
            addr,
            dir: dir.to_path_buf(),
        })
    }

    /// One mutual-TLS handshake and request through `via` with SNI `sni`: Ok when both sides
    /// verified each other and the server answered.
    pub fn check(&self, via: SocketAddr, sni: &str) -> Result<(), String> {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &via.to_string(), "-servername", sni])
            .args([
                "-cert",
                "client.pem",
                "-key",
                "client.key",
                "-CAfile",
                "ca.pem",
            ])
            .args(["-verify_return_error", "-alpn", "istio", "-ign_eof"])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("openssl s_client: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"GET / HTTP/1.0\r\n\r\n");
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        // The client verified the server; the server's page answers only a client whose
        // certificate it verified (-Verify with -verify_return_error fails the handshake).
        if text.contains("Verify return code: 0 (ok)") && text.contains("HTTP/1.0 200 ok") {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "mTLS through {via} failed: {}",
                err.lines().last().unwrap_or("no answer")
            ))
        }
    }
}

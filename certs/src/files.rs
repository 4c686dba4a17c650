//! Certificates on disk: reading a CA back from the directory `eastwest certs` (or Istio's
//! `Makefile.selfsigned.mk`) wrote, and writing a set of files so that a private key is never
//! readable by others, an existing file is never replaced by accident, and a reader never sees a
//! half-written file. Every error names the file and says why.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Ca, CertError, PluginFiles};

/// File names of a root CA's directory (`eastwest certs root`, Istio's `root-cert.pem` and
/// `root-key.pem`).
pub const ROOT_CERT: &str = "root-cert.pem";
pub const ROOT_KEY: &str = "root-key.pem";

/// Mode of a file holding a private key: owner read/write only.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of a file holding only certificates (before the umask).
pub const PUBLIC_MODE: u32 = 0o644;

/// One file to write: its name inside the output directory, its contents, and whether it holds
/// a private key ([`SECRET_MODE`]) or not ([`PUBLIC_MODE`]).
#[derive(Clone, Copy)]
pub struct OutFile<'a> {
    pub name: &'a str,
    pub contents: &'a str,
    pub secret: bool,
}

impl std::fmt::Debug for OutFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// What went wrong reading or writing certificate files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: CertError,
    },

    #[error(
        "{} holds no CA: expected {} (a cluster's intermediate, from `eastwest certs \
         intermediate` or Istio's Makefile) or {ROOT_KEY} (a root, from `eastwest certs root`)",
        dir.display(), PluginFiles::CA_KEY
    )]
    NoCa { dir: PathBuf },

    #[error("{} already exist{}; nothing was written", list(paths), if paths.len() == 1 { "s" } else { "" })]
    Exists { paths: Vec<PathBuf> },

    #[error("could not create the directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// Whether files that already exist may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse, and write nothing, if any target exists.
    Never,
    /// Replace existing files (`--force`).
    Replace,
}

/// Writes `files` into `dir` (created, with parents, if missing) and returns their paths.
///
/// - Every target is checked before anything is written: with [`Overwrite::Never`], one existing
///   target means nothing is written at all ([`FileError::Exists`] lists them).
/// - Each file is written to a temporary name in `dir`, flushed to disk, then moved into place,
///   so a reader (istiod, a sidecar, `kubectl create secret`) sees the old file or the new one,
///   never half of one. Without `Replace` the move is a `link(2)`, which fails rather than
///   replace a file that appeared in the meantime.
/// - Secret files are created with mode 0600 from the start (never briefly readable), public
///   files 0644 less the umask; a replaced file takes the new mode, not the old one.
pub fn write_files(
    dir: &Path,
    files: &[OutFile<'_>],
    overwrite: Overwrite,
) -> Result<Vec<PathBuf>, FileError> {
    let targets: Vec<PathBuf> = files.iter().map(|f| dir.join(f.name)).collect();
    if overwrite == Overwrite::Never {
        let existing: Vec<PathBuf> = targets
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(FileError::Exists { paths: existing });
        }
    }
    fs::create_dir_all(dir).map_err(|source| FileError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    for (file, target) in files.iter().zip(&targets) {
        write_one(dir, file, target, overwrite)?;
    }
    Ok(targets)
}

fn write_one(
    dir: &Path,
    file: &OutFile<'_>,
    target: &Path,
    overwrite: Overwrite,
) -> Result<(), FileError> {
    let tmp = dir.join(format!(".{}.tmp-{}", file.name, std::process::id()));
    let failed = |source| FileError::Write {
        path: target.to_owned(),
        source,
    };
    let mode = if file.secret {
        SECRET_MODE
    } else {
        PUBLIC_MODE
    };
    let result = (|| {
        // A stale temporary file from a killed run is ours to replace.
        let _ = fs::remove_file(&tmp);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        if file.secret {
            // The creation mode is already 0600 less the umask; make it exactly 0600.
            out.set_permissions(fs::Permissions::from_mode(SECRET_MODE))?;
        }
        out.write_all(file.contents.as_bytes())?;
        out.sync_all()?;
        match overwrite {
            Overwrite::Replace => fs::rename(&tmp, target),
            Overwrite::Never => fs::hard_link(&tmp, target).and_then(|()| fs::remove_file(&tmp)),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(failed)
}

/// Reads the CA in `dir`: a cluster's intermediate (`cert-chain.pem` + `ca-key.pem`, Istio's
/// plug-in layout) if `ca-key.pem` is there, otherwise a root (`root-cert.pem` +
/// `root-key.pem`).
pub fn read_ca(dir: &Path) -> Result<Ca, FileError> {
    let intermediate_key = dir.join(PluginFiles::CA_KEY);
    let (chain_path, key_path) = if intermediate_key.exists() {
        (dir.join(PluginFiles::CERT_CHAIN), intermediate_key)
    } else if dir.join(ROOT_KEY).exists() {
        (dir.join(ROOT_CERT), dir.join(ROOT_KEY))
    } else {
        return Err(FileError::NoCa {
            dir: dir.to_owned(),
        });
    };
    read_ca_files(&chain_path, &key_path)
}

/// Reads a root CA from `dir` (`root-cert.pem` + `root-key.pem`).
pub fn read_root(dir: &Path) -> Result<Ca, FileError> {
    read_ca_files(&dir.join(ROOT_CERT), &dir.join(ROOT_KEY))
}

/// Reads a CA from its certificate chain (own certificate first, root last) and private key,
/// blaming the right file for what is wrong.
pub fn read_ca_files(chain_path: &Path, key_path: &Path) -> Result<Ca, FileError> {
    let chain = read(chain_path)?;
    let key = read(key_path)?;
    Ca::from_pem(&chain, &key).map_err(|source| {
        let path = match source {
            CertError::NoPrivateKey
            | CertError::UnsupportedKey { .. }
            | CertError::RsaKey { .. }
            | CertError::KeyMismatch { .. } => key_path,
            CertError::Pem {
                what: "a private key",
                ..
            } => key_path,
            _ => chain_path,
        };
        FileError::Invalid {
            path: path.to_owned(),
            source,
        }
    })
}

fn read(path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;

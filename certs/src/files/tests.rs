use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files<'a>(key: &'a str, cert: &'a str) -> [OutFile<'a>; 2] {
    [
        OutFile {
            name: "key.pem",
            contents: key,
            secret: true,
        },
        OutFile {
            name: "cert.pem",
            contents: cert,
            secret: false,
        },
    ]
}

#[test]
fn writes_keys_0600_into_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let paths = write_files(&dir, &files("K", "C"), Overwrite::Never).unwrap();
    assert_eq!(paths, vec![dir.join("key.pem"), dir.join("cert.pem")]);
    assert_eq!(fs::read_to_string(&paths[0]).unwrap(), "K");
    assert_eq!(mode(&paths[0]), 0o600);
    assert_eq!(
        mode(&paths[1]) & 0o600,
        0o600,
        "certificate readable by its owner"
    );
    assert_eq!(
        mode(&paths[1]) & 0o022,
        0,
        "certificate not writable by others"
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn an_existing_file_means_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cert.pem"), "old").unwrap();
    let err = write_files(tmp.path(), &files("K", "C"), Overwrite::Never).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cert.pem already exists; nothing was written"),
        "{message}"
    );
    assert!(
        !tmp.path().join("key.pem").exists(),
        "the key was not written either"
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("cert.pem")).unwrap(),
        "old"
    );
}

#[test]
fn replace_overwrites_and_tightens_the_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    fs::write(&key, "old").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    write_files(tmp.path(), &files("K", "C"), Overwrite::Replace).unwrap();
    assert_eq!(fs::read_to_string(&key).unwrap(), "K");
    assert_eq!(
        mode(&key),
        0o600,
        "a replaced key file is not left world-readable"
    );
}

#[test]
fn write_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory where the file should go: the move into place fails.
    fs::create_dir(tmp.path().join("cert.pem")).unwrap();
    fs::write(tmp.path().join("cert.pem/x"), "").unwrap();
    let err = write_files(tmp.path(), &files("K", "C"), Overwrite::Replace).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("could not write "), "{message}");
    assert!(message.contains("cert.pem"), "{message}");
    // A file where the directory should go.
    let blocker = tmp.path().join("blocker");
    fs::write(&blocker, "").unwrap();
    let err = write_files(&blocker.join("out"), &files("K", "C"), Overwrite::Never).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not create the directory "),
        "{err}"
    );
}

fn write_ca(dir: &Path, chain: &str, key: &str, chain_name: &str, key_name: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(chain_name), chain).unwrap();
    fs::write(dir.join(key_name), key).unwrap();
}

#[test]
fn reads_back_a_root_and_an_intermediate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Ca::new_root("Istio").unwrap();
    write_ca(
        tmp.path(),
        root.cert_pem(),
        &root.key_pem(),
        ROOT_CERT,
        ROOT_KEY,
    );
    let loaded = read_ca(tmp.path()).unwrap();
    assert!(loaded.is_root());
    assert_eq!(loaded.cert_pem(), root.cert_pem());
    assert_eq!(read_root(tmp.path()).unwrap().cert_pem(), root.cert_pem());

    let east = root.intermediate("east").unwrap();
    let dir = tmp.path().join("east");
    let files = east.plugin_files();
    write_ca(
        &dir,
        &files.cert_chain,
        &files.ca_key,
        PluginFiles::CERT_CHAIN,
        PluginFiles::CA_KEY,
    );
    let loaded = read_ca(&dir).unwrap();
    assert!(!loaded.is_root());
    assert_eq!(loaded.chain_pem(), east.chain_pem());
}

#[test]
fn read_errors_blame_the_right_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = read_ca(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("holds no CA: expected ca-key.pem"), "{err}");

    let root = Ca::new_root("Istio").unwrap();
    let other = Ca::new_root("Istio").unwrap();
    // The key of another root: the key file is to blame.
    write_ca(
        tmp.path(),
        root.cert_pem(),
        &other.key_pem(),
        ROOT_CERT,
        ROOT_KEY,
    );
    let err = read_ca(tmp.path()).unwrap_err();
    let FileError::Invalid { path, source } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, &tmp.path().join(ROOT_KEY));
    assert!(matches!(source, CertError::KeyMismatch { .. }), "{err}");

    // A chain without the root: the chain file is to blame.
    let east = root.intermediate("east").unwrap();
    let dir = tmp.path().join("east");
    write_ca(
        &dir,
        east.cert_pem(),
        &east.key_pem(),
        PluginFiles::CERT_CHAIN,
        PluginFiles::CA_KEY,
    );
    let err = read_ca(&dir).unwrap_err();
    let FileError::Invalid { path, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, &dir.join(PluginFiles::CERT_CHAIN), "{err}");
    assert!(
        err.to_string().contains("append the root certificate"),
        "{err}"
    );

    // A missing chain next to a key.
    fs::remove_file(dir.join(PluginFiles::CERT_CHAIN)).unwrap();
    let err = read_ca(&dir).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "could not read {}",
            dir.join("cert-chain.pem").display()
        )),
        "{err}"
    );
}

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::*;
use crate::{KeyType, Validity, certs_from_pem, spiffe_id};

const EAST_ID: &str = "spiffe://cluster.local/ns/east/sa/default";

fn x509<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("SubjectKeyIdentifier present")
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// (critical, ca, pathlen)
fn basic_constraints(cert: &X509Certificate<'_>) -> (bool, bool, Option<u32>) {
    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    (bc.critical, bc.value.ca, bc.value.path_len_constraint)
}

fn attr(cert: &X509Certificate<'_>, oid: &x509_parser::oid_registry::Oid<'_>) -> String {
    let mut values = cert.subject().iter_by_oid(oid).map(|a| a.as_str().unwrap());
    values.next().expect("attribute present").to_owned()
}

#[test]
fn root_is_a_self_signed_unconstrained_ca() {
    let root = Ca::new_root("Istio").unwrap();
    let der = root.cert_der();
    let cert = x509(&der);

    assert_eq!(basic_constraints(&cert), (true, true, None));
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign() && ku.value.digital_signature());
    assert!(!ku.value.key_encipherment());
    assert_eq!(ski(&cert).len(), 20);
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    cert.verify_signature(None).unwrap();
    use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};
    assert_eq!(attr(&cert, &OID_X509_ORGANIZATION_NAME), "Istio");
    assert_eq!(attr(&cert, &OID_X509_COMMON_NAME), ROOT_CN);

    assert!(root.is_root());
    assert_eq!(root.root_cert_pem(), root.cert_pem());
    assert_eq!(root.chain_pem(), root.cert_pem());
    assert_eq!(root.root_store().len(), 1);
}

#[test]
fn intermediate_has_pathlen_zero_and_points_at_the_root() {
    use x509_parser::oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_LOCALITY_NAME, OID_X509_ORGANIZATION_NAME,
    };
    let root = Ca::new_root("Acme").unwrap();
    let east = root.intermediate("east").unwrap();
    let (root_der, east_der) = (root.cert_der(), east.cert_der());
    let (root_cert, cert) = (x509(&root_der), x509(&east_der));

    assert_eq!(basic_constraints(&cert), (true, true, Some(0)));
    assert_eq!(east.path_len(), Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_eq!(aki(&cert), Some(ski(&root_cert)));
    assert_ne!(ski(&cert), ski(&root_cert));
    assert_eq!(cert.issuer().as_raw(), root_cert.subject().as_raw());
    cert.verify_signature(Some(root_cert.public_key())).unwrap();

    assert_eq!(attr(&cert, &OID_X509_ORGANIZATION_NAME), "Acme");
    assert_eq!(attr(&cert, &OID_X509_COMMON_NAME), INTERMEDIATE_CN);
    assert_eq!(attr(&cert, &OID_X509_LOCALITY_NAME), "east");
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName(INTERMEDIATE_SAN_DNS)]
    );
    assert!(cert.validity().not_after <= root_cert.validity().not_after);

    // Istio cert-chain.pem: the intermediate, then the root.
    assert_eq!(
        certs_from_pem(&east.chain_pem()).unwrap(),
        vec![east_der.clone(), root_der.clone()]
    );
    assert_eq!(east.chain_der(), vec![east_der, root_der.clone()]);
    assert_eq!(east.root_cert_pem(), root.cert_pem());
    assert_eq!(east.root_cert_der(), root_der);
    assert!(!east.is_root());
}

#[test]
fn two_clusters_get_distinct_intermediates() {
    let root = Ca::new_root("Istio").unwrap();
    let (east, west) = (
        root.intermediate("east").unwrap(),
        root.intermediate("west").unwrap(),
    );
    let (e, w) = (east.cert_der(), west.cert_der());
    assert_ne!(x509(&e).subject().as_raw(), x509(&w).subject().as_raw());
    assert_ne!(ski(&x509(&e)), ski(&x509(&w)));
    assert_ne!(x509(&e).raw_serial(), x509(&w).raw_serial());
    assert_eq!(east.root_cert_pem(), west.root_cert_pem());
}

#[test]
fn an_intermediate_cannot_issue_another_ca() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let err = east.intermediate("nested").unwrap_err();
    assert!(matches!(err, CertError::PathLenExhausted { .. }), "{err}");
    assert!(err.to_string().contains("L=east"), "{err}");
}

#[test]
fn workload_cert_is_a_spiffe_svid() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let leaf = east
        .workload(EAST_ID, &["east.east.svc.cluster.local"])
        .unwrap();
    let (east_der, leaf_der) = (east.cert_der(), leaf.cert_der());
    let (issuer, cert) = (x509(&east_der), x509(&leaf_der));

    assert_eq!(basic_constraints(&cert), (true, false, None));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign() && !ku.crl_sign());
    // ECDSA keys do not do key transport (RFC 5480).
    assert!(!ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!eku.any && eku.other.is_empty());

    // Empty subject, like istiod's certificates: the SAN then must be critical (RFC 5280).
    assert_eq!(cert.subject().iter().count(), 0);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical);
    assert_eq!(
        san.value.general_names,
        vec![
            GeneralName::URI(EAST_ID),
            GeneralName::DNSName("east.east.svc.cluster.local")
        ]
    );

    assert_eq!(aki(&cert), Some(ski(&issuer)));
    assert_eq!(cert.issuer().as_raw(), issuer.subject().as_raw());
    cert.verify_signature(Some(issuer.public_key())).unwrap();
    assert!(cert.validity().not_after <= issuer.validity().not_after);

    assert_eq!(leaf.spiffe_id(), EAST_ID);
    assert_eq!(
        leaf.cert_chain_der(),
        vec![leaf_der.clone(), east_der.clone()]
    );
    assert_eq!(
        certs_from_pem(&leaf.chain_pem()).unwrap(),
        vec![leaf_der, east_der]
    );
    assert_eq!(leaf.root_cert_pem(), root.cert_pem());
    assert_eq!(leaf.root_cert_der(), root.cert_der());
}

#[test]
fn a_root_can_issue_workloads_directly() {
    let root = Ca::new_root("Istio").unwrap();
    let leaf = root.workload(EAST_ID, &[]).unwrap();
    assert_eq!(leaf.cert_chain_der(), vec![leaf.cert_der()]);
    assert_eq!(leaf.root_cert_pem(), root.cert_pem());
    assert_eq!(
        aki(&x509(&leaf.cert_der())),
        Some(ski(&x509(&root.cert_der())))
    );
}

#[test]
fn spiffe_id_round_trips() {
    let root = Ca::new_root("Istio").unwrap();
    let leaf = root
        .intermediate("west")
        .unwrap()
        .workload("spiffe://cluster.local/ns/west/sa/reviews", &["a.example"])
        .unwrap();
    assert_eq!(
        spiffe_id(&leaf.cert_der()).as_deref(),
        Some("spiffe://cluster.local/ns/west/sa/reviews")
    );
    assert_eq!(spiffe_id(&root.cert_der()), None);
}

#[test]
fn bad_names_are_refused_before_signing() {
    let root = Ca::new_root("Istio").unwrap();
    let err = root
        .workload("cluster.local/ns/east/sa/default", &[])
        .unwrap_err();
    assert!(matches!(err, CertError::InvalidSpiffeId { .. }), "{err}");
    let err = root.workload(EAST_ID, &["bücher.example"]).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::InvalidName {
                what: "DNS name",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn validity_defaults_and_caps() {
    let root = Ca::new_root("Istio").unwrap();
    let leaf = root.workload(EAST_ID, &[]).unwrap();
    let der = leaf.cert_der();
    let v = x509(&der).validity().clone();
    let lifetime = v.not_after.to_datetime() - v.not_before.to_datetime();
    assert_eq!(
        lifetime.whole_seconds(),
        (time::Duration::days(1) + Validity::BACKDATE).whole_seconds()
    );

    let short =
        Ca::new_root_with("Istio", CertOptions::ROOT.with_validity(Validity::days(10))).unwrap();
    let long = short
        .intermediate_with(
            "east",
            CertOptions::INTERMEDIATE.with_validity(Validity::days(20_000)),
        )
        .unwrap();
    assert_eq!(long.not_after(), short.not_after());
    let der = long.cert_der();
    assert_eq!(
        x509(&der).validity().not_after.timestamp(),
        short.not_after().unix_timestamp()
    );

    let err = Ca::new_root_with(
        "Istio",
        CertOptions::ROOT.with_validity(Validity::days(u32::MAX)),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::ValidityOutOfRange { .. }), "{err}");
}

#[test]
fn pem_round_trips() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let leaf = east.workload(EAST_ID, &[]).unwrap();

    assert_eq!(
        certs_from_pem(east.cert_pem()).unwrap(),
        vec![east.cert_der()]
    );
    assert!(east.key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(!east.key_pem().contains('\r'));
    let key = crate::key_from_pem(&east.key_pem()).unwrap();
    assert_eq!(key.secret_der(), east.key_der().secret_der());
    let key = crate::key_from_pem(&leaf.key_pem()).unwrap();
    assert_eq!(key.secret_der(), leaf.key_der().secret_der());
}

#[test]
fn pem_errors_say_what_is_missing() {
    let root = Ca::new_root("Istio").unwrap();
    assert!(matches!(certs_from_pem(""), Err(CertError::NoCertificate)));
    assert!(matches!(
        certs_from_pem(&root.key_pem()),
        Err(CertError::NoCertificate)
    ));
    assert!(matches!(
        crate::key_from_pem(root.cert_pem()),
        Err(CertError::NoPrivateKey)
    ));
    let truncated = &root.cert_pem()[..root.cert_pem().len() - 30];
    assert!(matches!(
        certs_from_pem(truncated),
        Err(CertError::Pem { .. })
    ));
}

#[test]
fn plugin_files_are_istio_cacerts() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let files = east.plugin_files();
    let names: Vec<_> = files.files().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );
    assert_eq!(files.ca_cert, east.cert_pem());
    assert_eq!(files.ca_key, east.key_pem());
    assert_eq!(files.cert_chain, east.chain_pem());
    assert_eq!(files.root_cert, root.cert_pem());
    assert!(!format!("{files:?}").contains("PRIVATE KEY"));
    assert!(!format!("{east:?}").contains("PRIVATE KEY"));
}

#[test]
fn loaded_ca_issues_like_the_original() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let loaded = Ca::from_pem(&east.chain_pem(), &east.key_pem()).unwrap();
    assert_eq!(loaded.cert_pem(), east.cert_pem());
    assert_eq!(loaded.chain_pem(), east.chain_pem());
    assert_eq!(loaded.root_cert_pem(), root.cert_pem());
    assert_eq!(loaded.path_len(), Some(0));
    assert_eq!(loaded.subject(), "O=Istio, CN=Intermediate CA, L=east");
    assert_eq!(
        loaded.not_after().unix_timestamp(),
        east.not_after().unix_timestamp()
    );

    let leaf = loaded.workload(EAST_ID, &[]).unwrap();
    let (east_der, leaf_der) = (east.cert_der(), leaf.cert_der());
    let (issuer, cert) = (x509(&east_der), x509(&leaf_der));
    assert_eq!(cert.issuer().as_raw(), issuer.subject().as_raw());
    assert_eq!(aki(&cert), Some(ski(&issuer)));
    cert.verify_signature(Some(issuer.public_key())).unwrap();

    let loaded_root = Ca::from_pem(root.cert_pem(), &root.key_pem()).unwrap();
    assert!(loaded_root.is_root());
    assert_eq!(loaded_root.path_len(), None);
    let west = loaded_root.intermediate("west").unwrap();
    assert_eq!(west.chain_der()[1], root.cert_der());
    assert!(matches!(
        loaded.intermediate("x"),
        Err(CertError::PathLenExhausted { .. })
    ));
}

#[test]
fn loading_refuses_inconsistent_input() {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let west = root.intermediate("west").unwrap();
    let leaf = east.workload(EAST_ID, &[]).unwrap();

    let err = Ca::from_pem(&east.chain_pem(), &west.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    let err = Ca::from_pem(east.cert_pem(), &east.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::NoRootInChain { .. }), "{err}");
    let err = Ca::from_pem(&leaf.chain_pem(), &leaf.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::NotACa { .. }), "{err}");
    let reversed = format!("{}{}", root.cert_pem(), east.cert_pem());
    let err = Ca::from_pem(&reversed, &root.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
    let other_root = Ca::new_root("Other").unwrap();
    let wrong_root = format!("{}{}", east.cert_pem(), other_root.cert_pem());
    let err = Ca::from_pem(&wrong_root, &east.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
    // Same subject as the real root, different key: only the signature tells them apart.
    let impostor = Ca::new_root("Istio").unwrap();
    let forged = format!("{}{}", east.cert_pem(), impostor.cert_pem());
    let err = Ca::from_pem(&forged, &east.key_pem()).unwrap_err();
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
    let err = Ca::from_pem(&east.chain_pem(), east.cert_pem()).unwrap_err();
    assert!(matches!(err, CertError::NoPrivateKey), "{err}");
}

#[test]
fn an_expired_ca_issues_nothing() {
    let root =
        Ca::new_root_with("Istio", CertOptions::ROOT.with_validity(Validity::days(0))).unwrap();
    let err = root.intermediate("east").unwrap_err();
    assert!(matches!(err, CertError::IssuerExpired { .. }), "{err}");
    let err = root.workload(EAST_ID, &[]).unwrap_err();
    assert!(matches!(err, CertError::IssuerExpired { .. }), "{err}");
}

fn key_bits(cert: &X509Certificate<'_>) -> usize {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed().unwrap() {
        PublicKey::RSA(rsa) => rsa.key_size(),
        PublicKey::EC(ec) => ec.key_size(),
        other => panic!("unexpected key {other:?}"),
    }
}

#[test]
fn rsa_chain_signs_with_sha256_and_leaves_may_encipher() {
    use x509_parser::oid_registry::{OID_PKCS1_SHA256WITHRSA, OID_SIG_ECDSA_WITH_SHA256};
    let rsa = |validity| CertOptions {
        key_type: KeyType::Rsa2048,
        validity,
    };
    let root = Ca::new_root_with("Istio", rsa(Validity::ROOT)).unwrap();
    let west = root.intermediate("west").unwrap(); // ECDSA below an RSA root
    let leaf = west
        .workload_with(EAST_ID, &[], rsa(Validity::WORKLOAD))
        .unwrap();

    let (root_der, west_der, leaf_der) = (root.cert_der(), west.cert_der(), leaf.cert_der());
    let (root_x, west_x, leaf_x) = (x509(&root_der), x509(&west_der), x509(&leaf_der));
    assert_eq!(key_bits(&root_x), 2048);
    assert_eq!(key_bits(&west_x), 256);
    assert_eq!(key_bits(&leaf_x), 2048);
    // Each certificate's signature is its issuer's algorithm.
    assert_eq!(
        root_x.signature_algorithm.algorithm,
        OID_PKCS1_SHA256WITHRSA
    );
    assert_eq!(
        west_x.signature_algorithm.algorithm,
        OID_PKCS1_SHA256WITHRSA
    );
    assert_eq!(
        leaf_x.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA256
    );
    west_x.verify_signature(Some(root_x.public_key())).unwrap();
    leaf_x.verify_signature(Some(west_x.public_key())).unwrap();

    let ku = leaf_x.key_usage().unwrap().unwrap().value;
    assert!(
        ku.digital_signature() && ku.key_encipherment(),
        "RSA leaf: {ku:?}"
    );
    let ku = west_x.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.key_encipherment());

    // An RSA CA round-trips through its PEM files and keeps issuing.
    let loaded = Ca::from_pem(root.cert_pem(), &root.key_pem()).unwrap();
    loaded.intermediate("east").unwrap();
}

#[test]
fn a_pkcs1_rsa_key_loads_like_its_pkcs8_form() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let root =
        Ca::new_root_with("Istio", CertOptions::ROOT.with_key_type(KeyType::Rsa2048)).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_der(root.key_der().secret_der()).unwrap();
    let pkcs1 = key.to_pkcs1_der().unwrap();
    let pkcs1_pem = crate::pem::encode("RSA PRIVATE KEY", pkcs1.as_bytes());
    let loaded = Ca::from_pem(root.cert_pem(), &pkcs1_pem).unwrap();
    assert_eq!(
        loaded.key_pem(),
        root.key_pem(),
        "re-encoded as the same PKCS#8"
    );

    let garbage = crate::pem::encode("RSA PRIVATE KEY", b"not a key");
    let err = Ca::from_pem(root.cert_pem(), &garbage)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("could not read the RSA PRIVATE KEY (PKCS#1)"),
        "{err}"
    );
}

#[test]
fn key_types_parse_by_their_command_line_names() {
    for key_type in KeyType::ALL {
        assert_eq!(key_type.name().parse::<KeyType>(), Ok(key_type));
    }
    let err = "rsa-1024".parse::<KeyType>().unwrap_err();
    assert_eq!(
        err,
        "unknown key type \"rsa-1024\"; expected one of ecdsa-p256, rsa-2048, rsa-4096"
    );
}

#[test]
fn secret_yaml_carries_the_four_files() {
    use base64::Engine as _;
    let root = Ca::new_root("Istio").unwrap();
    let files = root.intermediate("east").unwrap().plugin_files();
    let yaml = files.secret_yaml("istio-system").unwrap();
    let lines: Vec<&str> = yaml.lines().collect();
    assert_eq!(lines[..2], ["apiVersion: v1", "data:"]);
    assert_eq!(
        lines[6..],
        [
            "kind: Secret",
            "metadata:",
            "  name: cacerts",
            "  namespace: istio-system"
        ]
    );
    // Sorted data keys, each the base64 of its file.
    let mut expected = files.files();
    expected.sort_by_key(|(name, _)| *name);
    for (line, (name, contents)) in lines[2..6].iter().zip(expected) {
        let value = line.strip_prefix(&format!("  {name}: ")).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        assert_eq!(decoded, contents.as_bytes(), "{name}");
    }

    for bad in [
        "",
        "Istio-System",
        "-x",
        "x-",
        "a b",
        "x\nkind: Pod",
        &"a".repeat(64),
    ] {
        let err = files.secret_yaml(bad).unwrap_err().to_string();
        assert!(
            err.contains("is not a valid namespace name"),
            "{bad:?}: {err}"
        );
    }
    files.secret_yaml(&"a".repeat(63)).unwrap();
}

//! Exposure: which service hosts a listener lets clients reach, with the semantics of an Istio
//! Gateway's `hosts` list (exact names, `*.suffix` wildcards, `*`).

/// One `hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    /// `*.example.com`, stored as `.example.com`: matches any name with that suffix and at
    /// least one more label in front.
    Suffix(Box<str>),
    Exact(Box<str>),
}

/// Error for a malformed pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("host pattern {pattern:?} is not valid: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

/// A listener's `hosts` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatterns(Vec<Pattern>);

impl HostPatterns {
    /// Parses Gateway-style patterns. A `namespace/` prefix (`*/`, `./`, `ns/`) is accepted and
    /// ignored: eastwest exposes services, not VirtualServices.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let raw = p.as_ref();
            let err = |why| PatternError {
                pattern: raw.to_string(),
                why,
            };
            let s = match raw.split_once('/') {
                Some((_, host)) => host,
                None => raw,
            };
            let s = s.trim();
            if s.ends_with("*.") {
                return Err(err("a wildcard must be `*` or `*.suffix`"));
            }
            let s = s.trim_end_matches('.').to_ascii_lowercase();
            if s.is_empty() {
                return Err(err("it is empty"));
            }
            if s == "*" {
                out.push(Pattern::Any);
            } else if let Some(suffix) = s.strip_prefix('*') {
                if !suffix.starts_with('.') || suffix.len() < 2 {
                    return Err(err("a wildcard must be `*` or `*.suffix`"));
                }
                if suffix.contains('*') {
                    return Err(err("only a leading `*.` wildcard is allowed"));
                }
                out.push(Pattern::Suffix(suffix.into()));
            } else if s.contains('*') {
                return Err(err("only a leading `*.` wildcard is allowed"));
            } else {
                out.push(Pattern::Exact(s.into()));
            }
        }
        Ok(HostPatterns(out))
    }

    /// The default: `*.local`, as in Istio's `cross-network-gateway`.
    pub fn default_local() -> Self {
        HostPatterns(vec![Pattern::Suffix(".local".into())])
    }

    /// The patterns as they would be written (normalised: lower-case, no namespace prefix).
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|p| match p {
                Pattern::Any => "*".to_string(),
                Pattern::Suffix(sfx) => format!("*{sfx}"),
                Pattern::Exact(name) => name.to_string(),
            })
            .collect()
    }

    /// Whether `host` (lower-case, no trailing dot) may be reached.
    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Suffix(sfx) => host.len() > sfx.len() && host.ends_with(&**sfx),
            Pattern::Exact(name) => host == &**name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_semantics() {
        let h = HostPatterns::parse(&["*.local", "exact.example.com", "*/ns.example.org"]).unwrap();
        assert!(h.matches("west.west.svc.cluster.local"));
        assert!(!h.matches("local"));
        assert!(!h.matches(".local"));
        assert!(!h.matches("west.west.svc.cluster.localx"));
        assert!(h.matches("exact.example.com"));
        assert!(!h.matches("sub.exact.example.com"));
        assert!(h.matches("ns.example.org"));
        assert!(
            HostPatterns::parse(&["*"])
                .unwrap()
                .matches("anything.at.all")
        );
        assert!(
            HostPatterns::parse(&["*.Local."])
                .unwrap()
                .matches("a.local")
        );
        assert!(HostPatterns::default_local().matches("a.b.local"));
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["", "*local", "a.*.com", "*.", "foo*"] {
            let e = HostPatterns::parse(&[bad]).unwrap_err();
            assert_eq!(e.pattern, bad);
        }
    }
}

//! The request's query string, percent-decoded (`+` is a space, as Go's `url.ParseQuery` has it),
//! with Go's boolean spellings for flags such as `watch=1`.

/// Decoded `name=value` pairs in request order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                (decode(name), decode(value))
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `name`; an empty value counts as absent, as for the API server.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool` true spellings.
    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(
            self.get(name),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// Percent-decodes `s`; malformed escapes stay as written and invalid UTF-8 is replaced.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_selectors_as_clients_encode_them() {
        let q = Query::parse("labelSelector=kubernetes.io%2Fservice-name%3Dfoo&watch=1&limit=");
        assert_eq!(
            q.get("labelSelector"),
            Some("kubernetes.io/service-name=foo")
        );
        assert!(q.flag("watch"));
        assert_eq!(q.get("limit"), None);
        assert!(!q.flag("allowWatchBookmarks"));
    }

    #[test]
    fn malformed_escapes_survive() {
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("a%zz"), "a%zz");
        assert_eq!(decode("%41"), "A");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("%"), "%");
    }
}

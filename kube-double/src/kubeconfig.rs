//! kubeconfig files as `kubectl` and kube-rs read them: one cluster, user and context per
//! [`KubeconfigContext`], CA as `certificate-authority-data`, a bearer `token` per user.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// One context: a server, its CA, a token and optionally a default namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigContext {
    pub name: String,
    pub server: String,
    pub ca_pem: String,
    pub token: String,
    pub namespace: Option<String>,
}

impl KubeconfigContext {
    /// The same server reached with another token (to test rejection or rotation).
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }
}

/// A kubeconfig with one or more contexts (from one server or several); the first added is
/// current unless [`Kubeconfig::current`] says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kubeconfig {
    contexts: Vec<KubeconfigContext>,
    current: Option<String>,
}

impl Kubeconfig {
    pub fn new() -> Self {
        Kubeconfig::default()
    }

    #[must_use]
    pub fn context(mut self, context: KubeconfigContext) -> Self {
        self.contexts.push(context);
        self
    }

    #[must_use]
    pub fn current(mut self, name: &str) -> Self {
        self.current = Some(name.to_owned());
        self
    }

    /// The YAML text. Strings are written as JSON strings, which YAML reads unchanged.
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let current = self
            .current
            .clone()
            .or_else(|| self.contexts.first().map(|c| c.name.clone()))
            .unwrap_or_default();
        let mut clusters = String::new();
        let mut contexts = String::new();
        let mut users = String::new();
        for c in &self.contexts {
            let ca = STANDARD.encode(c.ca_pem.as_bytes());
            clusters += &format!(
                "- name: {}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
                q(&c.name),
                q(&c.server),
                q(&ca)
            );
            contexts += &format!(
                "- name: {}\n  context:\n    cluster: {}\n    user: {}\n",
                q(&c.name),
                q(&c.name),
                q(&c.name)
            );
            if let Some(ns) = &c.namespace {
                contexts += &format!("    namespace: {}\n", q(ns));
            }
            users += &format!(
                "- name: {}\n  user:\n    token: {}\n",
                q(&c.name),
                q(&c.token)
            );
        }
        let list = |items: String| {
            if items.is_empty() {
                " []\n".to_owned()
            } else {
                format!("\n{items}")
            }
        };
        format!(
            "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:{}contexts:{}users:{}current-context: {}\n",
            list(clusters),
            list(contexts),
            list(users),
            q(&current)
        )
    }

    /// Writes the file (mode 0600, as kubectl would, since it holds tokens).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let fail = |source| Error::WriteKubeconfig {
            path: path.to_owned(),
            source,
        };
        std::fs::write(path, self.to_yaml()).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_has_every_context() {
        let ctx = KubeconfigContext {
            name: "east".into(),
            server: "https://127.0.0.1:1234".into(),
            ca_pem: "PEM".into(),
            token: "t0k\"en".into(),
            namespace: None,
        };
        let west = KubeconfigContext {
            name: "west".into(),
            ..ctx.clone()
        }
        .with_namespace("istio-system");
        let yaml = Kubeconfig::new()
            .context(ctx)
            .context(west)
            .current("west")
            .to_yaml();
        assert!(
            yaml.contains("certificate-authority-data: \"UEVN\""),
            "{yaml}"
        );
        assert!(yaml.contains("token: \"t0k\\\"en\""), "{yaml}");
        assert!(yaml.contains("namespace: \"istio-system\""), "{yaml}");
        assert!(yaml.contains("current-context: \"west\""), "{yaml}");
        assert_eq!(yaml.matches("- name: \"east\"").count(), 3, "{yaml}");
    }
}

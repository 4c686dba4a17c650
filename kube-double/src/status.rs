//! `Status` objects: every error a client sees, with the API server's codes, reasons and message
//! wording (RBAC's "cannot list resource ... at the cluster scope", "too old resource version").

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// An error answer: HTTP status plus the `Status` body the real server would send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// RBAC's denial, word for word: `services is forbidden: User "u" cannot list resource
    /// "services" in API group "" at the cluster scope`.
    pub(crate) fn forbidden(
        user: &str,
        verb: &str,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let subject = match name {
            Some(name) => format!("{} {name:?}", rt.id()),
            None => rt.id(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_owned(),
        };
        let message = format!(
            "{subject} is forbidden: User {user:?} cannot {verb} resource {:?} in API group {:?} {scope}",
            rt.plural, rt.group
        );
        ApiError::new(403, "Forbidden", message).with_details(rt, name)
    }

    /// `services "foo" not found`.
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} {name:?} not found", rt.id());
        ApiError::new(404, "NotFound", message).with_details(rt, Some(name))
    }

    /// A path the server does not serve.
    pub(crate) fn no_route() -> Self {
        let mut e = ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(json!({}));
        e
    }

    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource \
             (kube-double serves get, list and watch only)",
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// The watch window has moved past `requested`; `oldest` is the oldest resourceVersion a
    /// watch may still start from.
    pub(crate) fn too_old(requested: u64, oldest: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub(crate) fn continue_expired() -> Self {
        ApiError::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter.",
        )
    }

    /// A `resourceVersionMatch=Exact` list at a compacted resourceVersion.
    pub(crate) fn list_too_old() -> Self {
        ApiError::new(
            410,
            "Expired",
            "The resourceVersion for the provided list is too old.",
        )
    }

    /// A fault a test injected with `fail_next`.
    pub(crate) fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            500 => (
                "InternalError",
                "Internal error occurred: injected by kube-double",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            409 => (
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            _ => ("", "injected by kube-double"),
        };
        ApiError::new(code, reason, message)
    }

    fn with_details(mut self, rt: &ResourceType, name: Option<&str>) -> Self {
        let mut details = Map::new();
        if let Some(name) = name {
            details.insert("name".into(), Value::String(name.to_owned()));
        }
        if !rt.group.is_empty() {
            details.insert("group".into(), Value::String(rt.group.clone()));
        }
        details.insert("kind".into(), Value::String(rt.plural.clone()));
        self.details = Some(Value::Object(details));
        self
    }

    /// The `Status` object as JSON text, fields in the real server's order (kind, apiVersion,
    /// metadata, status, message, reason, details, code): serde_json's maps would sort them.
    pub(crate) fn to_status(&self) -> String {
        let q = |s: &str| Value::String(s.to_owned()).to_string();
        let mut out = format!(
            r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":{}"#,
            q(&self.message)
        );
        if !self.reason.is_empty() {
            out += &format!(r#","reason":{}"#, q(self.reason));
        }
        if let Some(details) = &self.details {
            out += &format!(r#","details":{details}"#);
        }
        out += &format!(r#","code":{}}}"#, self.code);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_is_the_real_body() {
        assert_eq!(
            ApiError::unauthorized().to_status(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
        );
    }

    #[test]
    fn forbidden_messages_match_rbac() {
        let user = "system:serviceaccount:istio-system:eastwest";
        let e = ApiError::forbidden(user, "list", &ResourceType::services(), None, None);
        assert_eq!(
            e.message,
            r#"services is forbidden: User "system:serviceaccount:istio-system:eastwest" cannot list resource "services" in API group "" at the cluster scope"#
        );
        let e = ApiError::forbidden(
            user,
            "watch",
            &ResourceType::endpoint_slices(),
            Some("x"),
            None,
        );
        assert_eq!(
            e.message,
            r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:istio-system:eastwest" cannot watch resource "endpointslices" in API group "discovery.k8s.io" in the namespace "x""#
        );
        let status: Value = serde_json::from_str(&e.to_status()).unwrap();
        assert_eq!(
            status["details"],
            json!({"group": "discovery.k8s.io", "kind": "endpointslices"})
        );
        assert_eq!(status["code"], 403);
    }

    #[test]
    fn expiry_reads_like_the_watch_cache() {
        let e = ApiError::too_old(3, 10);
        assert_eq!((e.code, e.reason), (410, "Expired"));
        assert_eq!(e.message, "too old resource version: 3 (10)");
    }
}

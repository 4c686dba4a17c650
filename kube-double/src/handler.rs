//! One HTTP request, start to end: the injected delay, bearer-token authentication, routing,
//! RBAC-style denials and injected failures for resource requests, the answer, and its line in
//! the request log.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::Body;
use crate::log::RequestRecord;
use crate::query::Query;
use crate::route::{Route, Target, route};
use crate::shared::Shared;
use crate::status::ApiError;
use crate::watch::Watch;
use crate::{discovery, list};

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let delay = shared.controls.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let user = header(header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| shared.controls.user_for(token.trim()));
    let user_agent = header(header::USER_AGENT).map(str::to_owned);
    let metadata_only =
        header(header::ACCEPT).is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").to_owned();

    let response = answer(
        &shared,
        req.method(),
        &path,
        &raw_query,
        user.as_deref(),
        metadata_only,
    )
    .await;
    shared.log.push(RequestRecord {
        method: req.method().to_string(),
        path,
        query: raw_query,
        authenticated: user.is_some(),
        user: user.clone(),
        status: response.status().as_u16(),
        user_agent,
    });
    Ok(response)
}

async fn answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    raw_query: &str,
    user: Option<&str>,
    metadata_only: bool,
) -> Response<Body> {
    let registry = shared.registry.load_full();
    let route = route(path, &registry);
    if route == Route::Health {
        return respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Body::text("ok"),
        );
    }
    let Some(user) = user else {
        return error(&ApiError::unauthorized());
    };
    let query = Query::parse(raw_query);
    let document = match route {
        Route::Version => Ok(discovery::version(&shared.git_version)),
        Route::CoreVersions => Ok(discovery::core_versions(&shared.address)),
        Route::Groups => Ok(discovery::groups(&registry)),
        Route::Group(group) => discovery::group(&registry, &group).ok_or_else(ApiError::no_route),
        Route::Resources { group, version } => {
            Ok(discovery::resources(&registry, &group, &version))
        }
        Route::Resource(target) => {
            return resource(shared, method, target, &query, user, metadata_only).await;
        }
        Route::Health | Route::NotFound => Err(ApiError::no_route()),
    };
    match document {
        Ok(document) => json(&document),
        Err(e) => error(&e),
    }
}

async fn resource(
    shared: &Shared,
    method: &Method,
    target: Target,
    query: &Query,
    user: &str,
    metadata_only: bool,
) -> Response<Body> {
    if method != Method::GET {
        return error(&ApiError::method_not_allowed());
    }
    let Target {
        rt,
        namespace,
        name,
    } = target;
    let watch = query.flag("watch");
    let verb = match (watch, &name) {
        (true, _) => "watch",
        (false, Some(_)) => "get",
        (false, None) => "list",
    };
    if shared
        .controls
        .is_forbidden(&rt, verb, namespace.as_deref())
    {
        return error(&ApiError::forbidden(
            user,
            verb,
            &rt,
            namespace.as_deref(),
            name.as_deref(),
        ));
    }
    if let Some(code) = shared.controls.take_failure() {
        return error(&ApiError::injected(code));
    }
    let store = shared.store.lock().await;
    let answer = match (watch, name) {
        (true, Some(_)) => Err(ApiError::bad_request(
            "watch a single object with fieldSelector=metadata.name=NAME on its collection",
        )),
        (true, None) => match Watch::open(&store, rt, namespace, query, metadata_only) {
            Ok(watch) => {
                drop(store);
                return respond(StatusCode::OK, "application/json", watch.spawn());
            }
            Err(e) => Err(e),
        },
        (false, Some(name)) => list::get(&store, &rt, namespace.as_deref(), &name),
        (false, None) => list::list(&store, &rt, namespace.as_deref(), query),
    };
    drop(store);
    match answer {
        Ok(document) if metadata_only => json(&crate::list::partial_document(&document)),
        Ok(document) => json(&document),
        Err(e) => error(&e),
    }
}

fn json(document: &serde_json::Value) -> Response<Body> {
    respond(StatusCode::OK, "application/json", Body::json(document))
}

fn error(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(
        code,
        "application/json",
        Body::Full(Some(e.to_status().into())),
    );
    if e.code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

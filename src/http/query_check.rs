//! Unknown query parameters are refused on every endpoint, with the same list of parameters
//! that `/openapi.json` documents.
//!
//! A parameter the server does not know must not be answered as if it had been honoured
//! (`GET /v1/kv/k?version=0` once silently answered the latest value): each request's query
//! names are checked against the parameters the OpenAPI document ([`super::openapi`], the
//! same one the server serves) declares for its route and method, so the document is the one
//! list of what an endpoint takes, and a handler that reads
//! a parameter the document does not declare is refused in every test that uses it.
//!
//! What this does not do: check the values; the handlers' typed query extractors do that.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::RefOr;

use super::error::ApiError;

/// The documented query parameters of every (method, route) pair, routes as the router and the
/// OpenAPI document both spell them (`/v1/kv/{key}`).
static DOCUMENTED: LazyLock<HashMap<(Method, String), BTreeSet<String>>> = LazyLock::new(documented);

fn documented() -> HashMap<(Method, String), BTreeSet<String>> {
    let doc = super::openapi();
    let mut out = HashMap::new();
    for (path, item) in &doc.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::HEAD, &item.head),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let names = operation
                .parameters
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => Some(p.name.clone()),
                    _ => None,
                })
                .collect();
            out.insert((method, path.clone()), names);
        }
    }
    out
}

/// The documented query parameters of `method` on `route`; `None` for an undocumented route.
/// A HEAD without its own operation is the GET (axum answers it with the GET handler).
pub fn documented_params(method: &Method, route: &str) -> Option<&'static BTreeSet<String>> {
    let find = |m: &Method| DOCUMENTED.get(&(m.clone(), route.to_string()));
    find(method).or_else(|| if *method == Method::HEAD { find(&Method::GET) } else { None })
}

/// Middleware: 400 `invalid_query` naming the first query parameter the route does not take.
pub async fn refuse_unknown(request: Request, next: Next) -> Response {
    if let Err(e) = check(&request) {
        return e.into_response();
    }
    next.run(request).await
}

fn check(request: &Request) -> Result<(), ApiError> {
    if request.uri().query().is_none_or(str::is_empty) {
        return Ok(());
    }
    let Some(route) = request.extensions().get::<MatchedPath>() else { return Ok(()) };
    let Some(known) = documented_params(request.method(), route.as_str()) else { return Ok(()) };
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri()).map_err(|e| {
        ApiError::bad_request("invalid_query", format!("the query string is not valid: {}", e.body_text()))
    })?;
    let Some((name, _)) = pairs.iter().find(|(name, _)| !known.contains(name)) else { return Ok(()) };
    let takes = if known.is_empty() {
        "takes no query parameters".to_string()
    } else {
        format!("takes {}", known.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
    };
    Err(ApiError::bad_request(
        "invalid_query",
        format!("unknown query parameter {name:?}: {} {} {takes}", request.method(), route.as_str()),
    ))
}

//! Who may use the dashboard: with a token, requests carry it (a bearer header, or a cookie
//! set when the page is opened with `?token=`); without one (localhost only), the Host
//! header must name the loopback address, which stops DNS-rebinding pages. Posts must carry
//! the page's own header, which a form on another site cannot send.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header every POST of the page carries.
pub const CSRF_HEADER: &str = "x-pluribus-dashboard";

/// The cookie that carries the token.
const COOKIE: &str = "pluribus_dashboard_token";

/// The rules for one dashboard.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The token, when binding beyond localhost.
    pub token: Option<String>,
    /// Host headers accepted without a token (`127.0.0.1:8080`, `localhost:8080`, ...).
    pub hosts: Vec<String>,
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

impl Guard {
    /// What is wrong with a request, if anything; and whether to set the cookie.
    fn check(
        &self,
        method: &Method,
        h: &HeaderMap,
        query: Option<&str>,
    ) -> Result<bool, (StatusCode, &'static str)> {
        if method == Method::POST && h.get(CSRF_HEADER).is_none() {
            return Err((
                StatusCode::FORBIDDEN,
                "posts come from the dashboard page only",
            ));
        }
        match &self.token {
            Some(t) => {
                let bearer = h
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string);
                if bearer
                    .or_else(|| cookie_token(h))
                    .is_some_and(|g| same(&g, t))
                {
                    return Ok(false);
                }
                if query_token(query).is_some_and(|g| same(&g, t)) {
                    return Ok(true);
                }
                Err((
                    StatusCode::UNAUTHORIZED,
                    "open the dashboard with ?token=TOKEN (the --token it was started with)",
                ))
            }
            None => {
                let host = h
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if self.hosts.iter().any(|ok| ok == host) {
                    Ok(false)
                } else {
                    Err((
                        StatusCode::FORBIDDEN,
                        "this dashboard answers on its loopback address only",
                    ))
                }
            }
        }
    }
}

/// The middleware.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let set_cookie = match g.check(req.method(), req.headers(), req.uri().query()) {
        Ok(s) => s,
        Err((code, why)) => return (code, why).into_response(),
    };
    let mut resp = next.run(req).await;
    if set_cookie {
        if let Some(t) = &g.token {
            if let Ok(v) = format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/").parse() {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_hosts_and_posts() {
        let open = Guard {
            token: None,
            hosts: vec!["127.0.0.1:8080".into()],
        };
        assert_eq!(
            open.check(&Method::GET, &headers(&[("host", "127.0.0.1:8080")]), None),
            Ok(false)
        );
        assert!(open
            .check(
                &Method::GET,
                &headers(&[("host", "evil.example:8080")]),
                None
            )
            .is_err());
        assert!(open
            .check(&Method::POST, &headers(&[("host", "127.0.0.1:8080")]), None)
            .is_err());
        assert!(open
            .check(
                &Method::POST,
                &headers(&[("host", "127.0.0.1:8080"), (CSRF_HEADER, "1")]),
                None
            )
            .is_ok());
        let locked = Guard {
            token: Some("s3cret".into()),
            hosts: vec![],
        };
        assert!(locked.check(&Method::GET, &headers(&[]), None).is_err());
        assert!(locked
            .check(&Method::GET, &headers(&[]), Some("token=nope"))
            .is_err());
        assert_eq!(
            locked.check(&Method::GET, &headers(&[]), Some("a=1&token=s3cret")),
            Ok(true)
        );
        assert_eq!(
            locked.check(
                &Method::GET,
                &headers(&[("cookie", "x=1; pluribus_dashboard_token=s3cret")]),
                None
            ),
            Ok(false)
        );
        assert_eq!(
            locked.check(
                &Method::GET,
                &headers(&[("authorization", "Bearer s3cret")]),
                None
            ),
            Ok(false)
        );
    }
}

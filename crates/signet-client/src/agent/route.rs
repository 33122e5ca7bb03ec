//! Where a client's request goes: which target the proxy gets (and the proof
//! covers), and which origin and prefix the client used, so URLs in the
//! answer can point back at it.
//!
//! | the client sends | the proxy gets | URLs come back under |
//! |---|---|---|
//! | `GET /repos/o/r` (Host `127.0.0.1:7180`) | `/repos/o/r` | `http://127.0.0.1:7180` |
//! | `GET /api/v3/repos/o/r` (GitHub Enterprise form) | `/repos/o/r` | `http://127.0.0.1:7180/api/v3` |
//! | `POST /graphql`, `POST /api/graphql` | `/graphql` | as above |
//! | `GET http://api.github.localhost/user` (absolute form, `gh` via `HTTP_PROXY`) | `/user` | `http://api.github.localhost` |
//!
//! The proxy's own base path (`--proxy http://host/prefix`) goes in front of
//! every target. An absolute-form request for the agent's own loopback
//! address counts as origin-form. `CONNECT` and absolute-form requests for
//! any other host are refused; so is an origin-form request whose `Host` is not a loopback name
//! unless the agent runs with `--allow-remote`.

use std::net::{IpAddr, SocketAddr};

use http::header::HOST;
use http::request::Parts;
use http::uri::Authority;
use http::Method;

use super::error::AgentError;
use crate::SignError;

/// The host `gh` uses for `GH_HOST=github.localhost`, in absolute form
/// through `HTTP_PROXY`.
pub const LOCAL_API_HOST: &str = "api.github.localhost";

/// The GitHub Enterprise REST prefix.
const ENTERPRISE_PREFIX: &str = "/api/v3";

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The request-target sent to (and signed for) the proxy.
    pub target: String,
    /// The client's origin and prefix, no trailing `/`: what URLs pointing
    /// at the proxy or the upstream are rewritten to.
    pub client_base: String,
}

/// Routes one request (`proxy_path`: the proxy's base path, no trailing `/`).
pub fn route(
    parts: &Parts,
    local: SocketAddr,
    allow_remote: bool,
    proxy_path: &str,
) -> Result<Route, AgentError> {
    if parts.method == Method::CONNECT {
        return Err(AgentError::Connect(parts.uri.to_string()));
    }
    let origin = match parts.uri.authority() {
        Some(authority) => absolute_form_origin(&parts.uri, authority, local)?,
        None => origin_form_origin(parts, local, allow_remote)?,
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    // An absolute-form URL with an empty path means `/` (RFC 9112 §3.2.2).
    let path = if path.is_empty() { "/" } else { path };
    // Asterisk-form (`OPTIONS *`) names no resource: glued to the base path
    // it would leave it (`/gh*`), so only origin-form paths are signed.
    if !path.starts_with('/') {
        return Err(AgentError::Unsignable(SignError::InvalidTarget(
            path_and_query.to_owned(),
        )));
    }
    let (prefix, path) = if path == "/api/graphql" {
        (ENTERPRISE_PREFIX, "/graphql")
    } else {
        match path.strip_prefix(ENTERPRISE_PREFIX) {
            Some("") => (ENTERPRISE_PREFIX, "/"),
            Some(rest) if rest.starts_with('/') => (ENTERPRISE_PREFIX, rest),
            _ => ("", path),
        }
    };
    Ok(Route {
        target: format!("{proxy_path}{path}{query}"),
        client_base: format!("{origin}{prefix}"),
    })
}

/// `GET http://api.github.localhost/…`: the only host taken in absolute
/// form, besides the agent's own loopback address (a client told to use the
/// agent both as its `HTTP_PROXY` and as its API base sends those).
fn absolute_form_origin(
    uri: &http::Uri,
    authority: &Authority,
    local: SocketAddr,
) -> Result<String, AgentError> {
    let plain = uri.scheme_str() == Some("http") && !authority.as_str().contains('@');
    let host = authority.host();
    if plain
        && authority.port_u16().is_none_or(|port| port == 80)
        && host.eq_ignore_ascii_case(LOCAL_API_HOST)
    {
        return Ok(format!("http://{LOCAL_API_HOST}"));
    }
    if plain && authority.port_u16() == Some(local.port()) && is_loopback_name(host) {
        return Ok(format!("http://{authority}"));
    }
    Err(AgentError::ForeignHost(authority.to_string()))
}

/// `http://` + the `Host` the client used (the agent's own address without
/// one). Only a plain authority counts, and only a loopback one unless
/// `allow_remote`.
fn origin_form_origin(
    parts: &Parts,
    local: SocketAddr,
    allow_remote: bool,
) -> Result<String, AgentError> {
    let Some(host) = parts.headers.get(HOST) else {
        return Ok(format!("http://{local}"));
    };
    let text = String::from_utf8_lossy(host.as_bytes());
    let authority: Authority = text
        .parse()
        .map_err(|_| AgentError::RemoteHost(text.to_string()))?;
    let plain = !authority.as_str().contains('@')
        && !authority.host().is_empty()
        && authority
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if !plain || !(allow_remote || is_loopback_name(authority.host())) {
        return Err(AgentError::RemoteHost(text.to_string()));
    }
    Ok(format!("http://{authority}"))
}

/// `localhost`, a `*.localhost` name (RFC 6761), or a loopback address.
fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, host: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        let request = builder.body(()).unwrap_or_default();
        request.into_parts().0
    }

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7180))
    }

    fn route_of(method: &str, uri: &str, host: Option<&str>) -> Result<Route, AgentError> {
        route(&parts(method, uri, host), local(), false, "")
    }

    fn ok(target: &str, client_base: &str) -> Route {
        Route {
            target: target.to_owned(),
            client_base: client_base.to_owned(),
        }
    }

    #[test]
    fn rest_graphql_and_the_enterprise_forms_reach_the_proxy_without_their_prefix() {
        let host = Some("127.0.0.1:7180");
        for (uri, target, base) in [
            (
                "/repos/o/r?page=2",
                "/repos/o/r?page=2",
                "http://127.0.0.1:7180",
            ),
            (
                "/api/v3/repos/o/r",
                "/repos/o/r",
                "http://127.0.0.1:7180/api/v3",
            ),
            ("/api/v3", "/", "http://127.0.0.1:7180/api/v3"),
            ("/api/v3?x", "/?x", "http://127.0.0.1:7180/api/v3"),
            ("/api/v30/x", "/api/v30/x", "http://127.0.0.1:7180"),
            ("/graphql", "/graphql", "http://127.0.0.1:7180"),
            ("/api/graphql", "/graphql", "http://127.0.0.1:7180/api/v3"),
            ("/a?", "/a?", "http://127.0.0.1:7180"),
        ] {
            assert_eq!(
                route_of("GET", uri, host).ok(),
                Some(ok(target, base)),
                "{uri}"
            );
        }
    }

    #[test]
    fn the_proxy_base_path_goes_in_front() {
        let routed = route(&parts("GET", "/api/v3/user", None), local(), false, "/gh");
        assert_eq!(
            routed.ok(),
            Some(ok("/gh/user", "http://127.0.0.1:7180/api/v3"))
        );
    }

    #[test]
    fn absolute_form_is_taken_only_for_api_github_localhost() {
        for uri in [
            "http://api.github.localhost/user",
            "http://API.github.localhost:80/user",
        ] {
            assert_eq!(
                route_of("GET", uri, Some("api.github.localhost")).ok(),
                Some(ok("/user", "http://api.github.localhost")),
                "{uri}"
            );
        }
        for uri in [
            "http://api.github.com/user",
            "https://api.github.localhost/user",
            "http://api.github.localhost:8080/user",
            "http://evil.example/user",
            "http://127.0.0.1:9999/user",
        ] {
            assert!(
                matches!(route_of("GET", uri, None), Err(AgentError::ForeignHost(_))),
                "{uri}"
            );
        }
        assert_eq!(
            route_of("GET", "http://localhost:7180/api/v3/user", None).ok(),
            Some(ok("/user", "http://localhost:7180/api/v3")),
            "the agent's own address"
        );
        assert!(matches!(
            route_of("CONNECT", "api.github.com:443", None),
            Err(AgentError::Connect(_))
        ));
    }

    #[test]
    fn asterisk_form_is_refused_rather_than_glued_to_the_proxy_base_path() {
        for proxy_path in ["", "/gh"] {
            let routed = route(&parts("OPTIONS", "*", None), local(), false, proxy_path);
            assert!(
                matches!(routed, Err(AgentError::Unsignable(_))),
                "{proxy_path:?}: {routed:?}"
            );
        }
    }

    #[test]
    fn an_absolute_form_url_without_a_path_targets_the_root() {
        assert_eq!(
            route_of("GET", "http://api.github.localhost?x=1", None).ok(),
            Some(ok("/?x=1", "http://api.github.localhost"))
        );
    }

    #[test]
    fn an_origin_form_request_must_name_a_loopback_host_unless_remote_is_allowed() {
        for host in ["localhost:7180", "127.0.0.1", "[::1]:7180", "gh.localhost"] {
            assert!(route_of("GET", "/user", Some(host)).is_ok(), "{host}");
        }
        for host in ["evil.example", "10.0.0.1:7180", "user@127.0.0.1", "a b"] {
            assert!(
                matches!(
                    route_of("GET", "/user", Some(host)),
                    Err(AgentError::RemoteHost(_))
                ),
                "{host}"
            );
        }
        let remote = route(
            &parts("GET", "/user", Some("agent.internal:7180")),
            local(),
            true,
            "",
        );
        assert_eq!(remote.ok(), Some(ok("/user", "http://agent.internal:7180")));
        assert_eq!(
            route_of("GET", "/user", None).ok(),
            Some(ok("/user", "http://127.0.0.1:7180"))
        );
    }
}

//! The property the `agent_route` fuzz target asserts. The fuzz crate
//! includes this file (`#[path]`), and `fuzz_corpus/mod.rs` replays the
//! committed corpus through the same function, so `cargo test` on stable
//! checks every corpus input.

use std::net::{IpAddr, SocketAddr};

use http::header::HOST;
use http::{HeaderValue, Method, Request, Uri};
use signet_client::agent::route::{route, LOCAL_API_HOST};

/// The proxy's base paths the target picks from.
const PROXY_PATHS: [&str; 3] = ["", "/gh", "/a/b"];
/// Methods the target picks from (`CONNECT` must always be refused).
const METHODS: [&str; 5] = ["GET", "POST", "CONNECT", "OPTIONS", "PATCH"];
/// Where the agent listens in the target.
const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 7180);
/// The proxy's authority in the target.
const PROXY_AUTHORITY: &str = "proxy.internal:8080";

/// Target `agent_route`: byte 0 picks the method, the proxy's base path,
/// `--allow-remote` and whether a `Host` is sent; the rest is the
/// request-target, then (after a newline) the `Host` value.
///
/// Never panics, and a routed request never leaves the API namespace or
/// names another host: `CONNECT` is refused; the target the agent signs and
/// forwards is the proxy's base path plus an origin-form path (it cannot
/// carry a scheme or an authority, so the request built from it still goes
/// to the proxy, under its base path) with the client's query byte for
/// byte; and URLs come back under `http://` + a loopback name or
/// `api.github.localhost` (any `Host` only with `--allow-remote`).
pub fn agent_route(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(flags) % METHODS.len()];
    let proxy_path = PROXY_PATHS[usize::from(flags >> 3) % PROXY_PATHS.len()];
    let allow_remote = flags & 0x20 != 0;
    let send_host = flags & 0x40 != 0;
    let (target, host) = match rest.iter().position(|&c| c == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let mut request = Request::builder().method(method).uri(uri.clone());
    if send_host {
        let Ok(host) = HeaderValue::from_bytes(host) else {
            return;
        };
        request = request.header(HOST, host);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let Ok(routed) = route(&parts, SocketAddr::from(LOCAL), allow_remote, proxy_path) else {
        return;
    };

    assert_ne!(parts.method, Method::CONNECT, "CONNECT was routed");
    let path = routed
        .target
        .strip_prefix(proxy_path)
        .unwrap_or_else(|| panic!("{:?} is not under {proxy_path:?}", routed.target));
    assert!(
        path.starts_with('/'),
        "{:?} leaves the API namespace ({uri})",
        routed.target
    );
    if let Some(query) = uri.query() {
        assert!(
            routed.target.ends_with(&format!("?{query}")),
            "query of {uri} became {:?}",
            routed.target
        );
    }
    // What the agent sends: the proxy's scheme and authority, this target.
    if let Ok(outgoing) = Uri::builder()
        .scheme("http")
        .authority(PROXY_AUTHORITY)
        .path_and_query(routed.target.as_str())
        .build()
    {
        assert_eq!(
            outgoing.authority().map(|a| a.as_str()),
            Some(PROXY_AUTHORITY),
            "{:?} changes the host",
            routed.target
        );
        assert!(
            outgoing.path().starts_with(&format!("{proxy_path}/")),
            "{outgoing} leaves the proxy's base path"
        );
    }

    let Some(base) = routed.client_base.strip_prefix("http://") else {
        panic!("client base {:?} is not http://", routed.client_base);
    };
    let authority = base.split('/').next().unwrap_or_default();
    let Ok(authority) = authority.parse::<http::uri::Authority>() else {
        panic!("client base {:?} has no authority", routed.client_base);
    };
    let local_api = authority.host().eq_ignore_ascii_case(LOCAL_API_HOST);
    if uri.authority().is_some() || !allow_remote {
        assert!(
            local_api || is_loopback_name(authority.host()),
            "{uri} (Host {:?}) answers under {:?}",
            String::from_utf8_lossy(host),
            routed.client_base
        );
    }
}

/// `localhost`, a `*.localhost` name or a loopback address.
fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

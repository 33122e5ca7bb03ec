//! The per-request context: what the stages learn about one request,
//! carried from stage to stage instead of long argument lists. Ingress
//! yields a [`Route`]; admission (authentication, policy, limits, the
//! replay record) turns it into an [`Admitted`] request, which the last
//! stage answers from the cache or forwards.

use std::sync::Arc;

use http::Method;
use signet_core::VerifiedProof;

use crate::auth::clients::Client;
use crate::body::BufferedBody;
use crate::upstream::api::cache::Lookup;
use crate::upstream::credentials::Current;

/// What ingress checked: the method and the origin-form target, as
/// received.
#[derive(Debug)]
pub(crate) struct Route<'a> {
    /// One of the seven forwarded methods.
    pub method: Method,
    /// The origin-form target, forwarded byte for byte.
    pub target: &'a str,
    /// A `HEAD`: answers carry no body.
    pub head: bool,
}

/// What ingress decided: answered already (health), or a route to admit.
pub(crate) enum Ingress<'a> {
    /// `/healthz` or `/readyz`, answered without a proof.
    Answered(http::Response<crate::body::ProxyBody>),
    /// A request to authenticate.
    Route(Route<'a>),
}

/// A request past steps 1–11: who sent it, its spent proof, the token it
/// goes out with, what the cache holds for it, and its verified body.
pub(crate) struct Admitted<'a> {
    /// Its route.
    pub route: Route<'a>,
    /// The verified client.
    pub client: Arc<Client>,
    /// The verified (and recorded) proof.
    pub proof: VerifiedProof,
    /// The token it goes out with (no `Debug`: it is the token).
    pub credential: Arc<Current>,
    /// What the cache holds for it.
    pub lookup: Lookup,
    /// The body, read whole and covered by the request signature.
    pub body: BufferedBody,
}

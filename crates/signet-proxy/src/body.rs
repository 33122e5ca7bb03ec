//! Request bodies in (bounded, timed) and response bodies out (streamed).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use signet_core::ErrorCode;

use crate::refusal::Refusal;

/// The body of every response the proxy sends: a small in-memory body
/// (health, refusals) or the upstream's body, streamed frame by frame.
#[derive(Debug)]
pub struct ProxyBody(Either<Full<Bytes>, Incoming>);

impl ProxyBody {
    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody(Either::Left(Full::new(bytes.into())))
    }

    /// The upstream's body, passed through without buffering.
    pub fn streamed(body: Incoming) -> Self {
        ProxyBody(Either::Right(body))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Reads a whole request body (spec §5 step 7): refused up front when its
/// declared length is over `limit`, and while reading when it grows past it.
/// The bytes are exactly what is hashed and forwarded.
pub async fn read(body: Incoming, limit: u64, timeout: Option<Duration>) -> Result<Bytes, Refusal> {
    if body.size_hint().lower() > limit {
        return Err(
            Refusal::new(ErrorCode::RequestTooLarge).with_detail(format!(
                "Content-Length {} over the limit of {limit}",
                body.size_hint().lower()
            )),
        );
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let collect = Limited::new(body, limit).collect();
    let collected = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| Refusal::new(ErrorCode::RequestTimeout))?,
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(Refusal::new(ErrorCode::RequestTooLarge)
                .with_detail(format!("body grew past the limit of {limit} bytes")))
        }
        Err(error) => Err(Refusal::new(ErrorCode::InvalidBody).with_detail(error.to_string())),
    }
}

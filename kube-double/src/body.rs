//! Response bodies: a whole JSON document, or a watch stream fed through a channel. A stream
//! that yields an error makes hyper drop the connection without the final chunk: to the client
//! that is an API server dying mid-watch.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// The reason a watch stream was cut.
#[derive(Debug, thiserror::Error)]
#[error("watch stream cut by the API server double ({0})")]
pub(crate) struct Cut(pub(crate) &'static str);

pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, Cut>>),
}

impl Body {
    pub(crate) fn json(value: &serde_json::Value) -> Body {
        Body::Full(Some(Bytes::from(value.to_string())))
    }

    pub(crate) fn text(text: &'static str) -> Body {
        Body::Full(Some(Bytes::from_static(text.as_bytes())))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

//! Transport failures tagged with the API server they were talking to, so that every message
//! can name it (see `client::build`).

use std::fmt;
use std::time::Duration;

/// A transport failure of one client, tagged with the API server's URL and the time bounds in
/// force (see `client::build`). Shows as the failure it wraps.
#[derive(Debug)]
pub struct Transport {
    pub server: String,
    pub connect_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    source: Option<tower::BoxError>,
}

impl Transport {
    /// The tag of one client, before any failure.
    pub fn template(
        server: &str,
        connect_timeout: Option<Duration>,
        request_timeout: Option<Duration>,
    ) -> Self {
        Transport {
            server: server.to_string(),
            connect_timeout,
            request_timeout,
            source: None,
        }
    }

    /// `err`, tagged; kube's own errors (auth, config) pass untouched so they keep their kind.
    pub fn tag(&self, err: tower::BoxError) -> tower::BoxError {
        if err.is::<kube::Error>() || err.is::<Transport>() {
            return err;
        }
        Box::new(Transport {
            source: Some(err),
            server: self.server.clone(),
            ..*self
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => source.fmt(f),
            None => write!(f, "no failure"),
        }
    }
}

impl std::error::Error for Transport {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// `err` and its causes.
pub fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    // Bounded: a cycle of sources must not hang an error message.
    std::iter::successors(Some(err), |e| e.source()).take(32)
}

/// The first error of type `T` in `err`'s chain.
pub fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    chain(err).find_map(|e| e.downcast_ref::<T>())
}

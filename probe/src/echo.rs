//! `realip-probe echo`: a test backend that tells a client what it looked like from here.
//!
//! Every connection is answered with one JSON object naming the TCP peer (`remote_addr`, what an
//! L4 backend sees) and the forwarding facts a proxy may have added (`x_forwarded_for`,
//! `x_real_ip`, `forwarded`, and the source of a leading PROXY v1/v2 header). HTTP/1.1 clients
//! get it as a `200` response body; raw TCP clients (silent, or speaking anything but HTTP) get
//! the bare JSON line after a short wait.
//!
//! Bounded by construction: one thread per connection up to [`Limits::max_connections`], a read
//! deadline per connection and a cap on the bytes read before answering.

use crate::l7;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Resource limits of the echo server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Bytes read before answering (PROXY header + HTTP request head).
    pub max_head: usize,
    /// How long a client that has sent nothing is waited for before it is treated as raw TCP.
    pub raw_wait: Duration,
    /// How long a client may take to send a complete head.
    pub head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_head: 16 * 1024,
            raw_wait: Duration::from_millis(300),
            head_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a listener thread: {0}")]
    Thread(#[source] io::Error),
}

/// What the backend answers. Field names are a contract with the lab and with users' scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// IP address of the TCP peer (what nginx calls `$remote_addr`).
    pub remote_addr: String,
    pub remote_port: u16,
    pub x_forwarded_for: Option<String>,
    pub x_real_ip: Option<String>,
    pub forwarded: Option<String>,
    /// `addr:port` announced by a leading PROXY v1/v2 header.
    pub proxy_protocol: Option<String>,
}

/// How far the bytes read so far go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Nothing yet beyond a complete PROXY header, if any.
    Silent,
    /// More bytes may complete a PROXY header or an HTTP request head.
    Incomplete,
    /// An HTTP request head ends at this offset (after the blank line).
    Http,
    /// Not HTTP: answer with the bare JSON line.
    Raw,
}

/// Classifies what a client sent after any PROXY header.
fn classify(rest: &[u8]) -> Head {
    // An HTTP/1.x request line starts with a method token of upper-case letters and a space.
    let method_len = rest.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match rest.get(method_len) {
        None if method_len == 0 => Head::Silent,
        None if method_len < 16 => Head::Incomplete,
        Some(b' ') if method_len > 0 => {
            if find(rest, b"\r\n\r\n").is_some() || find(rest, b"\n\n").is_some() {
                Head::Http
            } else {
                Head::Incomplete
            }
        }
        _ => Head::Raw,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Builds the answer from the peer address and the bytes the client sent.
fn answer(peer: SocketAddr, head: &[u8]) -> Answer {
    let facts = l7::forwarding_facts(head);
    Answer {
        remote_addr: peer.ip().to_string(),
        remote_port: peer.port(),
        x_forwarded_for: facts.x_forwarded_for,
        x_real_ip: facts.x_real_ip,
        forwarded: facts.forwarded,
        proxy_protocol: facts
            .proxy_protocol
            .map(|p| SocketAddr::new(p.src, p.sport).to_string()),
    }
}

/// Where the bytes read so far stand: past any complete PROXY header, is it HTTP or raw?
fn head_state(buf: &[u8]) -> Head {
    match l7::proxy_header(buf) {
        Ok(None) => classify(buf),
        Ok(Some(proxy)) => classify(buf.get(proxy.len..).unwrap_or_default()),
        Err(l7::ProxyError::Incomplete) => Head::Incomplete,
        // Not a PROXY header after all: answer what was seen, without waiting for more.
        Err(l7::ProxyError::Malformed(_)) => Head::Raw,
    }
}

/// Listens on every address and serves until the process ends. Binds all addresses first, so a
/// bad address fails before anything is served.
pub fn serve(addrs: &[SocketAddr], limits: Limits) -> Result<(), EchoError> {
    let listeners = addrs
        .iter()
        .map(|&addr| TcpListener::bind(addr).map_err(|source| EchoError::Bind { addr, source }))
        .collect::<Result<Vec<_>, _>>()?;
    for listener in &listeners {
        if let Ok(addr) = listener.local_addr() {
            eprintln!("realip-probe echo: listening on {addr}");
        }
    }
    let active = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for listener in listeners {
        let active = Arc::clone(&active);
        let handle = thread::Builder::new()
            .name("echo-accept".into())
            .spawn(move || accept_loop(&listener, &active, limits))
            .map_err(EchoError::Thread)?;
        threads.push(handle);
    }
    for handle in threads {
        let _ = handle.join();
    }
    Ok(())
}

fn accept_loop(listener: &TcpListener, active: &Arc<AtomicUsize>, limits: Limits) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("realip-probe echo: accept: {err}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            eprintln!(
                "realip-probe echo: {peer}: refused, {} connections already open",
                limits.max_connections
            );
            continue;
        }
        let active_conn = Arc::clone(active);
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                if let Err(err) = handle(stream, peer, limits) {
                    eprintln!("realip-probe echo: {peer}: {err}");
                }
                active_conn.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(err) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            eprintln!("realip-probe echo: {peer}: cannot start a thread: {err}");
        }
    }
}

/// Serves one connection: read the head within the limits, answer, close gracefully.
pub fn handle(mut stream: TcpStream, peer: SocketAddr, limits: Limits) -> io::Result<()> {
    let started = Instant::now();
    let mut buf = vec![0u8; limits.max_head];
    let mut len = 0;
    let kind = loop {
        let state = head_state(&buf[..len]);
        if !matches!(state, Head::Silent | Head::Incomplete) {
            break state;
        }
        if len == buf.len() {
            break Head::Raw;
        }
        // A silent client is raw TCP after `raw_wait`; a talking one gets `head_timeout`.
        let limit = if state == Head::Silent {
            limits.raw_wait
        } else {
            limits.head_timeout
        };
        let Some(left) = limit
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            break Head::Raw;
        };
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => break Head::Raw,
            Ok(n) => len += n,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Head::Raw
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    };
    let body = serde_json::to_string(&answer(peer, &buf[..len])).unwrap_or_default();
    let reply = match kind {
        Head::Http => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
            body.len() + 1
        ),
        _ => format!("{body}\n"),
    };
    stream.set_write_timeout(Some(limits.head_timeout))?;
    stream.write_all(reply.as_bytes())?;
    // Closing with unread bytes queued makes the kernel send a reset, which can destroy the
    // answer in flight: half-close, then drain what the client still sends, within bounds.
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_needs_the_blank_line() {
        assert_eq!(classify(b""), Head::Silent);
        assert_eq!(classify(b"GE"), Head::Incomplete);
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Incomplete);
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Head::Http);
        assert_eq!(classify(b"POST /a HTTP/1.1\n\n"), Head::Http);
    }

    #[test]
    fn proxy_headers_are_looked_past() {
        assert_eq!(head_state(b"PROXY TCP4 192.0.2.1"), Head::Incomplete);
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 40000 80\r\n";
        assert_eq!(head_state(v1), Head::Silent);
        assert_eq!(
            head_state(&[&v1[..], b"GET / HTTP/1.0\r\n\r\n"].concat()),
            Head::Http
        );
        assert_eq!(head_state(&[&v1[..], b"ping"].concat()), Head::Raw);
        assert_eq!(head_state(b"PROXY garbage\r\n"), Head::Raw);
    }

    #[test]
    fn answer_carries_only_forwarding_facts() {
        let peer: SocketAddr = "198.51.100.9:41000".parse().unwrap();
        let head = b"PROXY TCP4 192.0.2.1 198.51.100.1 40000 80\r\nGET /secret HTTP/1.1\r\nCookie: c\r\nX-Forwarded-For: 192.0.2.1, 198.51.100.2\r\nX-Real-IP: 192.0.2.1\r\n\r\n";
        let json = serde_json::to_string(&answer(peer, head)).unwrap();
        assert_eq!(
            json,
            r#"{"remote_addr":"198.51.100.9","remote_port":41000,"x_forwarded_for":"192.0.2.1, 198.51.100.2","x_real_ip":"192.0.2.1","forwarded":null,"proxy_protocol":"192.0.2.1:40000"}"#
        );
    }

    #[test]
    fn anything_else_is_raw() {
        assert_eq!(classify(b"hello\n"), Head::Raw);
        assert_eq!(classify(b" GET"), Head::Raw);
        assert_eq!(classify(b"\x16\x03\x01"), Head::Raw);
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"), Head::Raw);
    }
}

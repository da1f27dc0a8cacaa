//! `kubectl-realip lab-net`: what the lab runs inside its namespaces — a test client that sends
//! one HTTP GET, and a small L7 proxy that adds X-Forwarded-For (a cloud L7 load balancer, an
//! ingress controller). The only sockets of the plugin; lab-only, bounded in size and time.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a proxy writes X-Forwarded-For.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XffMode {
    /// Append the peer to what came in (a cloud L7 load balancer).
    Append,
    /// Replace it with the peer (ingress-nginx without use-forwarded-headers).
    Replace,
}

impl XffMode {
    /// Its name on `lab-net proxy --xff`.
    pub fn name(self) -> &'static str {
        match self {
            XffMode::Append => "append",
            XffMode::Replace => "replace",
        }
    }
}

/// The line `lab-net proxy` prints once it listens.
pub const READY: &str = "ready";
/// Largest request head the proxy accepts, and largest reply the client reads.
const MAX_HEAD: usize = 16 * 1024;
const MAX_REPLY: usize = 64 * 1024;
/// Connections a proxy serves at once; more are closed.
const MAX_ACTIVE: usize = 64;
const PROXY_IDLE: Duration = Duration::from_secs(10);

/// What `lab-net get` prints: one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GetOutcome {
    /// The client's own address and port (getsockname), once connected.
    pub local: Option<SocketAddr>,
    pub status: Option<u16>,
    /// The reply body: JSON when it parses as JSON, else a string.
    pub reply: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The connection got no answer at all (no SYN-ACK, no RST) within the timeout.
    #[serde(default)]
    pub timed_out: bool,
}

/// Connects (retrying refusals for `wait`), sends `GET /`, reads the reply.
pub fn get(to: SocketAddr, timeout: Duration, wait: Duration) -> GetOutcome {
    let deadline = Instant::now() + wait;
    let stream = loop {
        match TcpStream::connect_timeout(&to, timeout) {
            Ok(stream) => break stream,
            Err(err)
                if err.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => {
                return GetOutcome {
                    timed_out: err.kind() == io::ErrorKind::TimedOut,
                    error: Some(format!("connect to {to}: {err}")),
                    ..GetOutcome::default()
                }
            }
        }
    };
    let local = stream.local_addr().ok();
    match exchange(stream, to, timeout) {
        Ok((status, reply)) => GetOutcome {
            local,
            status: Some(status),
            reply: Some(reply),
            ..GetOutcome::default()
        },
        Err(err) => GetOutcome {
            local,
            error: Some(format!("request to {to}: {err}")),
            ..GetOutcome::default()
        },
    }
}

fn exchange(
    mut stream: TcpStream,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<(u16, serde_json::Value)> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {to}\r\nUser-Agent: kubectl-realip-lab\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..read]);
        if buf.len() > MAX_REPLY || reply_complete(&buf) {
            break;
        }
    }
    parse_reply(&buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not an HTTP reply: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(120)])
            ),
        )
    })
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// True once the head and `Content-Length` bytes of body are in.
fn reply_complete(buf: &[u8]) -> bool {
    let Some(end) = head_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    content_length(&head).is_some_and(|length| buf.len() >= end + length)
}

/// Status code and body (JSON when it parses) of an HTTP/1.x reply.
pub fn parse_reply(buf: &[u8]) -> Option<(u16, serde_json::Value)> {
    let end = head_end(buf)?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status: u16 = head
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/1."))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let mut body = &buf[end..];
    if let Some(length) = content_length(&head) {
        body = &body[..length.min(body.len())];
    }
    let body = String::from_utf8_lossy(body);
    let value = serde_json::from_str(body.trim())
        .unwrap_or_else(|_| serde_json::Value::String(body.into_owned()));
    Some((status, value))
}

/// Rewrites a request head the way an L7 proxy does: X-Forwarded-For gets the peer (appended to
/// what came in, or replacing it), X-Real-IP becomes the peer. Returns `None` if it is not HTTP.
pub fn rewrite_head(head: &str, peer: IpAddr, mode: XffMode) -> Option<String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().filter(|line| line.contains(" HTTP/1."))?;
    let mut kept = Vec::new();
    let mut incoming_xff: Vec<String> = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if let Some((_, value)) = line.split_once(':') {
                incoming_xff.push(value.trim().to_string());
            }
        } else if !name.eq_ignore_ascii_case("x-real-ip") {
            kept.push(line);
        }
    }
    let xff = match mode {
        XffMode::Append if !incoming_xff.is_empty() => {
            format!("{}, {peer}", incoming_xff.join(", "))
        }
        _ => peer.to_string(),
    };
    let mut out = String::from(request_line);
    out.push_str("\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "X-Forwarded-For: {xff}\r\nX-Real-IP: {peer}\r\n\r\n"
    ));
    Some(out)
}

pub fn proxy(listen: SocketAddr, to: SocketAddr, mode: XffMode) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    crate::output::emit(&format!("{READY}\n"))?;
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if active.load(Ordering::SeqCst) >= MAX_ACTIVE {
            continue; // dropping the stream closes it
        }
        active.fetch_add(1, Ordering::SeqCst);
        let active = Arc::clone(&active);
        std::thread::spawn(move || {
            if let Err(err) = forward(stream, to, mode) {
                tracing::debug!("lab proxy: {err}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn forward(mut client: TcpStream, to: SocketAddr, mode: XffMode) -> io::Result<()> {
    let peer = client.peer_addr()?.ip();
    client.set_read_timeout(Some(PROXY_IDLE))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let read = client.read(&mut chunk)?;
        if read == 0 || buf.len() > MAX_HEAD {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let Some(head) = rewrite_head(&head, peer, mode) else {
        return Ok(());
    };
    let mut upstream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    upstream.set_read_timeout(Some(PROXY_IDLE))?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&buf[end..])?;
    let (mut up_read, mut client_write) = (upstream.try_clone()?, client.try_clone()?);
    let replies = std::thread::spawn(move || {
        let _ = io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = replies.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.10\r\nX-Real-IP: 192.0.2.10\r\n\r\n";

    #[test]
    fn append_keeps_what_came_in() {
        let out = rewrite_head(HEAD, "198.51.100.1".parse().unwrap(), XffMode::Append).unwrap();
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.10, 198.51.100.1\r\nX-Real-IP: 198.51.100.1\r\n\r\n"
        );
    }

    #[test]
    fn replace_writes_only_the_peer() {
        let out = rewrite_head(HEAD, "198.51.100.12".parse().unwrap(), XffMode::Replace).unwrap();
        assert!(out.contains("X-Forwarded-For: 198.51.100.12\r\n"), "{out}");
        assert!(!out.contains("192.0.2.10"), "{out}");
    }

    #[test]
    fn not_http_is_refused() {
        assert!(rewrite_head(
            "hello\r\n\r\n",
            "192.0.2.1".parse().unwrap(),
            XffMode::Append
        )
        .is_none());
    }

    #[test]
    fn replies_parse_with_and_without_length() {
        let body = br#"{"remote_addr":"192.0.2.10:4000"}"#;
        let reply = [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat();
        assert!(reply_complete(&reply));
        let (status, value) = parse_reply(&reply).unwrap();
        assert_eq!(status, 200);
        assert_eq!(value["remote_addr"], "192.0.2.10:4000");
        assert!(!reply_complete(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert_eq!(
            parse_reply(b"HTTP/1.0 404 x\r\n\r\nnope").unwrap().1,
            "nope"
        );
        assert!(parse_reply(b"garbage").is_none());
    }

    #[test]
    fn proxy_and_client_on_loopback() {
        // An upstream that answers with the request head it got, so the test sees the headers.
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = upstream.accept() {
                let mut buf = vec![0u8; 4096];
                let read = conn.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..read]).to_string();
                let body = serde_json::json!({ "head": text }).to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let listen = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen_addr = listen.local_addr().unwrap();
        drop(listen);
        std::thread::spawn(move || proxy(listen_addr, upstream_addr, XffMode::Append));
        let outcome = get(listen_addr, Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(outcome.status, Some(200), "{outcome:?}");
        let head = outcome.reply.unwrap()["head"].as_str().unwrap().to_string();
        assert!(head.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{head}");
    }

    #[test]
    fn refused_connection_is_reported() {
        let listen = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listen.local_addr().unwrap();
        drop(listen);
        let outcome = get(addr, Duration::from_millis(200), Duration::ZERO);
        assert!(outcome.error.is_some());
        assert!(!outcome.timed_out, "refused is not a timeout");
        assert!(outcome.local.is_none());
    }
}

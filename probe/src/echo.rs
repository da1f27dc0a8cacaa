//! `realip-probe echo`: a test backend that tells a client what it looked like from here.
//!
//! Every connection is answered with one JSON object naming the TCP peer (`remote_addr`, what an
//! L4 backend sees) and the forwarding facts a proxy may have added (`x_forwarded_for`,
//! `x_real_ip`, `forwarded`, and the source of a leading PROXY v1/v2 header). A client that
//! speaks HTTP/1.x gets it as an HTTP response body, whenever its request comes: `200` for a
//! whole request head, `400`, `408` or `431` for one cut short, too slow or too large. A raw TCP
//! client gets the bare JSON line: once it sends anything but HTTP, half-closes, or stays
//! silent for [`Limits::raw_wait`]. A PROXY header must be whole and well formed: one that is
//! cut short, too large or broken is refused (the connection is closed unanswered), never
//! trusted.
//!
//! Bounded by construction: one thread per connection up to [`Limits::max_connections`], and
//! every phase of a connection within its own deadline (reading the head, writing the answer,
//! lingering for what the client still sends), whatever a client does; a cap on the bytes read.

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
    /// How long a client that has sent nothing (past a PROXY header) is waited for before it
    /// is taken for raw TCP: an HTTP request that starts within it is answered in HTTP.
    pub raw_wait: Duration,
    /// How long, from connecting, a client may take to send its whole request head.
    pub head_timeout: Duration,
    /// How long writing the answer may take.
    pub write_timeout: Duration,
    /// How long what a client still sends after the answer is read and dropped (closing with
    /// unread bytes would reset the connection and could destroy the answer in flight).
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_head: 16 * 1024,
            raw_wait: Duration::from_secs(2),
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
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
    /// A whole HTTP request head (up to its blank line).
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

/// Whether `rest` has started an HTTP request line (a method and a space).
fn started_http(rest: &[u8]) -> bool {
    let method_len = rest.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method_len > 0 && rest.get(method_len) == Some(&b' ')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the bytes read so far stand: past any complete PROXY header, is it HTTP or raw?
fn head_state(buf: &[u8]) -> Head {
    match l7::proxy_header(buf) {
        Ok(None) => classify(buf),
        Ok(Some(proxy)) => classify(buf.get(proxy.len..).unwrap_or_default()),
        Err(l7::ProxyError::Incomplete) => Head::Incomplete,
        // Broken: nothing more will mend it; `decide` refuses it.
        Err(l7::ProxyError::Malformed(_)) => Head::Raw,
    }
}

/// Why reading the head stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// What was read decides (a whole HTTP head, bytes that are not HTTP).
    Decided,
    /// A silent client waited for [`Limits::raw_wait`].
    Quiet,
    /// [`Limits::head_timeout`] passed while the head was incomplete.
    Late,
    /// The client half-closed.
    Ended,
    /// [`Limits::max_head`] bytes and still incomplete.
    Full,
}

/// What a connection gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// An HTTP response with this status line's code and reason, the JSON as its body.
    Http(u16, &'static str),
    /// The bare JSON line.
    Raw,
    /// Nothing: the connection is closed, for this reason.
    Refuse(String),
}

/// The reply to the bytes `buf` read until `stop`.
fn decide(buf: &[u8], stop: Stop, limits: &Limits) -> Reply {
    let rest = match l7::proxy_header(buf) {
        Ok(None) => buf,
        Ok(Some(proxy)) => buf.get(proxy.len..).unwrap_or_default(),
        Err(l7::ProxyError::Incomplete) => {
            let why = match stop {
                Stop::Full => format!("longer than the {}-byte limit", limits.max_head),
                Stop::Ended => "cut short by the client".into(),
                _ => format!("not complete within {:?}", limits.head_timeout),
            };
            return Reply::Refuse(format!("PROXY protocol header {why}"));
        }
        Err(err @ l7::ProxyError::Malformed(_)) => return Reply::Refuse(err.to_string()),
    };
    match (classify(rest), stop) {
        (Head::Http, _) => Reply::Http(200, "OK"),
        (Head::Incomplete, _) if started_http(rest) => match stop {
            Stop::Full => Reply::Http(431, "Request Header Fields Too Large"),
            Stop::Ended => Reply::Http(400, "Bad Request"),
            _ => Reply::Http(408, "Request Timeout"),
        },
        _ => Reply::Raw,
    }
}

/// Builds the answer from the peer address and the bytes the client sent (a PROXY header is
/// only read here once it is known whole).
fn answer(peer: SocketAddr, head: &[u8]) -> Answer {
    let (proxy, rest) = match l7::proxy_header(head) {
        Ok(Some(header)) => (header.source, head.get(header.len..).unwrap_or_default()),
        _ => (None, head),
    };
    let facts = l7::http_forwarding(rest);
    Answer {
        remote_addr: peer.ip().to_string(),
        remote_port: peer.port(),
        x_forwarded_for: facts.x_forwarded_for,
        x_real_ip: facts.x_real_ip,
        forwarded: facts.forwarded,
        proxy_protocol: proxy.map(|p| SocketAddr::new(p.src, p.sport).to_string()),
    }
}

/// One line on stderr. Never fails: a closed stderr (a caller that stopped reading) must not
/// take a serving thread down, as `eprintln!` would by panicking.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "realip-probe echo: {message}");
}

/// Time left until `deadline`, if any.
fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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
            say(format_args!("listening on {addr}"));
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
                say(format_args!("accept: {err}"));
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            say(format_args!(
                "{peer}: refused, {} connections already open",
                limits.max_connections
            ));
            continue;
        }
        let active_conn = Arc::clone(active);
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                if let Err(err) = handle(stream, peer, limits) {
                    say(format_args!("{peer}: {err}"));
                }
                active_conn.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(err) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            say(format_args!("{peer}: cannot start a thread: {err}"));
        }
    }
}

/// Serves one connection: read the head, answer (or refuse), close gracefully; each phase
/// within its deadline.
pub fn handle(mut stream: TcpStream, peer: SocketAddr, limits: Limits) -> io::Result<()> {
    let started = Instant::now();
    let mut buf = vec![0u8; limits.max_head];
    let (len, stop) = read_head(&mut stream, &mut buf, started, &limits)?;
    let head = &buf[..len];
    let reply = decide(head, stop, &limits);
    if let Reply::Refuse(why) = &reply {
        say(format_args!("{peer}: refused: {why}"));
        return Ok(());
    }
    let json = serde_json::to_string(&answer(peer, head)).unwrap_or_default();
    let reply = match reply {
        Reply::Http(code, reason) => format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}\n",
            json.len() + 1
        ),
        Reply::Raw | Reply::Refuse(_) => format!("{json}\n"),
    };
    write_by(
        &mut stream,
        reply.as_bytes(),
        Instant::now() + limits.write_timeout,
    )?;
    stream.shutdown(Shutdown::Write)?;
    linger(&mut stream, &mut buf, Instant::now() + limits.linger)
}

/// Reads until the head decides the reply, or a bound stops it: the bytes read and why.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut [u8],
    started: Instant,
    limits: &Limits,
) -> io::Result<(usize, Stop)> {
    let mut len = 0;
    loop {
        let state = head_state(&buf[..len]);
        if matches!(state, Head::Http | Head::Raw) {
            return Ok((len, Stop::Decided));
        }
        if len == buf.len() {
            return Ok((len, Stop::Full));
        }
        // A silent client is raw TCP after `raw_wait`; a talking one gets `head_timeout`.
        let (limit, stop) = if state == Head::Silent {
            (limits.raw_wait, Stop::Quiet)
        } else {
            (limits.head_timeout, Stop::Late)
        };
        let Some(wait) = left(started + limit) else {
            return Ok((len, stop));
        };
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Ok((len, Stop::Ended)),
            Ok(n) => len += n,
            Err(err) if timed_out(&err) => return Ok((len, stop)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Writes all of `bytes` by `deadline`, however slowly the client reads.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let wait = left(deadline).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client does not read the answer",
            )
        })?;
        stream.set_write_timeout(Some(wait))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Reads and drops what the client still sends, until it closes or `deadline`: a client that
/// trickles bytes is let go at the deadline all the same.
fn linger(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while let Some(wait) = left(deadline) {
        stream.set_read_timeout(Some(wait))?;
        match stream.read(buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
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
    }

    #[test]
    fn replies_follow_the_request_whenever_it_stopped() {
        let limits = Limits::default();
        let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for stop in [Stop::Decided, Stop::Late, Stop::Ended] {
            assert_eq!(decide(http, stop, &limits), Reply::Http(200, "OK"));
        }
        let partial = b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(
            decide(partial, Stop::Late, &limits),
            Reply::Http(408, "Request Timeout")
        );
        assert_eq!(
            decide(partial, Stop::Ended, &limits),
            Reply::Http(400, "Bad Request")
        );
        assert_eq!(
            decide(partial, Stop::Full, &limits),
            Reply::Http(431, "Request Header Fields Too Large")
        );
        for raw in [&b""[..], b"hello\n", b"GE"] {
            for stop in [Stop::Quiet, Stop::Ended, Stop::Decided] {
                assert_eq!(decide(raw, stop, &limits), Reply::Raw, "{raw:?} {stop:?}");
            }
        }
    }

    #[test]
    fn a_proxy_header_is_whole_and_well_formed_or_refused() {
        let limits = Limits::default();
        let v1 = b"PROXY TCP4 203.0.113.5 198.51.100.1 40001 80\r\n";
        assert_eq!(decide(v1, Stop::Quiet, &limits), Reply::Raw);
        for (cut, stop, says) in [
            (&v1[..20], Stop::Late, "not complete within"),
            (&v1[..20], Stop::Ended, "cut short"),
            (&v1[..20], Stop::Full, "longer than the 16384-byte limit"),
        ] {
            let Reply::Refuse(why) = decide(cut, stop, &limits) else {
                panic!("{stop:?} answered");
            };
            assert!(why.contains(says), "{why}");
        }
        let Reply::Refuse(why) = decide(b"PROXY garbage\r\n", Stop::Decided, &limits) else {
            panic!("a broken header answered");
        };
        assert!(why.contains("malformed"), "{why}");
        // Even if it were answered, a cut header's source is never taken.
        let peer: SocketAddr = "198.51.100.9:41000".parse().unwrap();
        assert_eq!(answer(peer, &v1[..30]).proxy_protocol, None);
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

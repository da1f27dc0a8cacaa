//! `realip-probe echo` over real loopback sockets: raw TCP and HTTP/1.1 clients.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The echo server as a child process, killed when dropped.
struct Echo {
    child: Child,
    addrs: Vec<SocketAddr>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(listen: &[&str]) -> Echo {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realip-probe"));
    cmd.arg("echo");
    for addr in listen {
        cmd.args(["--listen", addr]);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn realip-probe echo");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut addrs = Vec::new();
    while addrs.len() < listen.len() {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("echo exited before listening");
        }
        if let Some(addr) = line.trim().strip_prefix("realip-probe echo: listening on ") {
            addrs.push(addr.parse().expect("listening address"));
        }
    }
    // Its stderr is closed from here on: the server must keep serving (and refusing) all the same.
    Echo { child, addrs }
}

fn exchange(addr: SocketAddr, send: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(send).unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).expect("read answer");
    (out, started.elapsed())
}

fn body(reply: &str) -> Value {
    let json = reply.rsplit("\r\n\r\n").next().unwrap_or(reply);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

#[test]
fn silent_tcp_client_gets_json_after_a_short_wait() {
    let echo = start(&["127.0.0.1:0"]);
    let (reply, took) = exchange(echo.addrs[0], b"");
    let json = body(&reply);
    assert!(reply.starts_with('{'), "{reply}");
    assert_eq!(json["remote_addr"], "127.0.0.1");
    assert!(json["remote_port"].as_u64().unwrap_or(0) > 0);
    for field in [
        "x_forwarded_for",
        "x_real_ip",
        "forwarded",
        "proxy_protocol",
    ] {
        assert!(json[field].is_null(), "{field} in {json}");
    }
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn non_http_bytes_get_the_json_line() {
    let echo = start(&["127.0.0.1:0"]);
    let (reply, _) = exchange(echo.addrs[0], b"hello there\n");
    assert_eq!(body(&reply)["remote_addr"], "127.0.0.1");
    assert!(!reply.starts_with("HTTP/"), "{reply}");
}

#[test]
fn http_client_gets_a_200_with_json_over_ipv4_and_ipv6() {
    let echo = start(&["127.0.0.1:0", "[::1]:0"]);
    for (addr, ip) in echo.addrs.iter().zip(["127.0.0.1", "::1"]) {
        let (reply, _) = exchange(
            *addr,
            b"GET /anything?x=1 HTTP/1.1\r\nHost: svc\r\nCookie: secret\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains("Content-Type: application/json"), "{reply}");
        assert_eq!(body(&reply)["remote_addr"], ip);
        assert!(!reply.contains("secret"), "{reply}");
    }
}

#[test]
fn oversized_head_is_answered_not_hung() {
    let echo = start(&["127.0.0.1:0"]);
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let (reply, took) = exchange(echo.addrs[0], &request);
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{reply}"
    );
    assert_eq!(body(&reply)["remote_addr"], "127.0.0.1");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[test]
fn unusable_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_realip-probe"))
        .args(["echo", "--listen", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn forwarding_headers_are_reported_and_nothing_else() {
    let echo = start(&["127.0.0.1:0"]);
    let (reply, _) = exchange(
        echo.addrs[0],
        b"GET /private?q=1 HTTP/1.1\r\nHost: svc\r\nCookie: sid=abc123\r\nX-Forwarded-For: 203.0.113.5, 198.51.100.2\r\nX-Real-IP: 203.0.113.5\r\nForwarded: for=203.0.113.5;proto=https\r\n\r\n",
    );
    let json = body(&reply);
    assert_eq!(json["x_forwarded_for"], "203.0.113.5, 198.51.100.2");
    assert_eq!(json["x_real_ip"], "203.0.113.5");
    assert_eq!(json["forwarded"], "for=203.0.113.5;proto=https");
    assert!(json["proxy_protocol"].is_null());
    for secret in ["abc123", "private", "Host", "q=1"] {
        assert!(!reply.contains(secret), "{secret} leaked: {reply}");
    }
}

#[test]
fn proxy_v1_before_http_and_before_silence() {
    let echo = start(&["127.0.0.1:0"]);
    let v1 = b"PROXY TCP4 203.0.113.5 198.51.100.1 40001 31908\r\n";
    let (reply, _) = exchange(
        echo.addrs[0],
        &[&v1[..], b"GET / HTTP/1.1\r\n\r\n"].concat(),
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert_eq!(body(&reply)["proxy_protocol"], "203.0.113.5:40001");
    assert_eq!(body(&reply)["remote_addr"], "127.0.0.1");
    // A PROXY header and then nothing: an L4 backend behind a PROXY-speaking balancer.
    let (reply, took) = exchange(echo.addrs[0], v1);
    assert!(reply.starts_with('{'), "{reply}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(body(&reply)["proxy_protocol"], "203.0.113.5:40001");
}

#[test]
fn proxy_v2_ipv6_source_is_reported() {
    let echo = start(&["127.0.0.1:0"]);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([0x21, 0x21, 0, 36]); // v2 PROXY, TCP over IPv6, 36 address bytes
    let src: std::net::Ipv6Addr = "2001:db8::5".parse().unwrap();
    let dst: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    v2.extend(src.octets());
    v2.extend(dst.octets());
    v2.extend(40002u16.to_be_bytes());
    v2.extend(443u16.to_be_bytes());
    v2.extend(b"GET / HTTP/1.1\r\nX-Real-IP: 2001:db8::5\r\n\r\n");
    let (reply, _) = exchange(echo.addrs[0], &v2);
    let json = body(&reply);
    assert_eq!(json["proxy_protocol"], "[2001:db8::5]:40002");
    assert_eq!(json["x_real_ip"], "2001:db8::5");
}

/// Sends `send`, half-closes if asked, and reads until the server closes: what came back (a
/// reset counts as the end) and how long it took.
fn exchange_then(addr: SocketAddr, send: &[u8], half_close: bool) -> (String, Duration) {
    let started = Instant::now();
    let conn = TcpStream::connect(addr).expect("connect");
    let (reply, _) = exchange_on(conn, send, half_close);
    (reply, started.elapsed())
}

/// [`exchange_then`] on a connection already made.
fn exchange_on(mut conn: TcpStream, send: &[u8], half_close: bool) -> (String, Duration) {
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(send).unwrap();
    if half_close {
        conn.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!("reading the answer: {err}"),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_request_that_comes_after_a_pause_is_answered_in_http() {
    let echo = start(&["127.0.0.1:0"]);
    let mut conn = TcpStream::connect(echo.addrs[0]).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Longer than the old 300 ms: a proxy or a person may well take that long.
    std::thread::sleep(Duration::from_millis(1200));
    conn.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\nX-Real-IP: 203.0.113.5\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read answer");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(body(&reply)["x_real_ip"], "203.0.113.5");
    // A PROXY header at once (a balancer), the request later (its client).
    let mut conn = TcpStream::connect(echo.addrs[0]).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"PROXY TCP4 203.0.113.5 198.51.100.1 40001 80\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read answer");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(body(&reply)["proxy_protocol"], "203.0.113.5:40001");
}

#[test]
fn an_http_head_cut_short_or_too_slow_still_gets_http() {
    let echo = start(&["127.0.0.1:0"]);
    let partial = b"GET / HTTP/1.1\r\nHost: svc\r\n";
    let (reply, took) = exchange_then(echo.addrs[0], partial, true);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (reply, took) = exchange_then(echo.addrs[0], partial, false);
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert_eq!(body(&reply)["remote_addr"], "127.0.0.1");
    assert!(took < Duration::from_secs(7), "took {took:?}");
}

/// A PROXY v2 header for a TCP/IPv6 source, declaring `len` bytes after its fixed part.
fn proxy_v2(len: u16) -> Vec<u8> {
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([0x21, 0x21]);
    v2.extend(len.to_be_bytes());
    v2.extend(
        "2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend(40002u16.to_be_bytes());
    v2.extend(443u16.to_be_bytes());
    v2
}

#[test]
fn a_truncated_or_oversized_proxy_header_is_refused_not_trusted() {
    let echo = start(&["127.0.0.1:0"]);
    // TLVs announced (36 address bytes + 20) but never sent: cut short by the client...
    let truncated = proxy_v2(56);
    let (reply, took) = exchange_then(echo.addrs[0], &truncated, true);
    assert_eq!(reply, "", "a truncated header was answered");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // ...or left hanging until the head's deadline.
    let (reply, took) = exchange_then(echo.addrs[0], &truncated, false);
    assert_eq!(reply, "", "a truncated header was answered");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // A header longer than the head may be: refused as soon as that is clear.
    let mut oversized = proxy_v2(u16::MAX);
    oversized.extend(std::iter::repeat_n(0u8, 20 * 1024));
    let (reply, took) = exchange_then(echo.addrs[0], &oversized, false);
    assert_eq!(reply, "", "an oversized header was answered");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // A v1 line cut short, and a broken one.
    for (bad, half_close) in [
        (&b"PROXY TCP4 203.0.113.5 198.51"[..], true),
        (
            &b"PROXY TCP4 not-an-address\r\nGET / HTTP/1.1\r\n\r\n"[..],
            false,
        ),
    ] {
        let (reply, _) = exchange_then(echo.addrs[0], bad, half_close);
        assert_eq!(reply, "", "{bad:?} was answered");
    }
    // The server is still there for a whole header.
    let mut whole = proxy_v2(36);
    whole.extend(b"GET / HTTP/1.1\r\n\r\n");
    let (reply, _) = exchange_then(echo.addrs[0], &whole, false);
    assert_eq!(body(&reply)["proxy_protocol"], "[2001:db8::5]:40002");
}

/// Connects, asks, reads the answer, then sends a byte every 100 ms until the server lets go:
/// how long after the answer that took.
fn trickle_after_answer(addr: SocketAddr) -> Option<Duration> {
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    let answered = Instant::now();
    while answered.elapsed() < Duration::from_secs(30) {
        if conn.write_all(b"x").is_err() {
            return Some(answered.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_client_that_trickles_after_the_answer_is_let_go() {
    let echo = start(&["127.0.0.1:0"]);
    let held = trickle_after_answer(echo.addrs[0]).expect("the server never let go");
    assert!(
        held < Duration::from_secs(3),
        "held {held:?} after answering"
    );
}

#[test]
fn three_hundred_tricklers_do_not_lock_good_requests_out() {
    let echo = start(&["127.0.0.1:0"]);
    let addr = echo.addrs[0];
    let tricklers: Vec<_> = (0..300)
        .map(|_| std::thread::spawn(move || trickle_after_answer(addr)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A good request gets its answer soon, retrying while every slot is taken (the server
    // closes what it cannot take; the kernel may refuse while its queue is full).
    let started = Instant::now();
    let answered = loop {
        let reply = TcpStream::connect(addr)
            .map(|conn| exchange_on(conn, b"GET / HTTP/1.1\r\n\r\n", false).0)
            .unwrap_or_default();
        if reply.starts_with("HTTP/1.1 200 OK") {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no answer for 10 s while tricklers held on"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        answered < Duration::from_secs(5),
        "answered after {answered:?}"
    );
    for trickler in tricklers {
        if let Some(held) = trickler.join().expect("trickler") {
            assert!(
                held < Duration::from_secs(5),
                "a trickler was held {held:?}"
            );
        }
    }
}

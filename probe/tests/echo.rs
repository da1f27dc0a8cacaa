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

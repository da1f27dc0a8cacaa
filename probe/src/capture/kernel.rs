//! The probe's second reviewed module with `unsafe` code: netlink sockets (route, nf_tables,
//! conntrack) and the iptables-legacy `getsockopt` calls. Every call here only reads: dumps and
//! single GET requests, `IPT_SO_GET_INFO`/`IPT_SO_GET_ENTRIES` (and the IPv6 twins), no NEW, DEL,
//! SET or flush message is ever built. Everything above this module works on plain byte vectors
//! parsed by `crate::evidence`.
//!
//! Each `unsafe` block is a single libc call on a buffer this module owns, with the length it
//! passes equal to the buffer's.

#![allow(unsafe_code)]

use super::socket::setsockopt;
use crate::evidence::nl::{self, NLMSG_DONE, NLMSG_ERROR};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const NETLINK_ROUTE: libc::c_int = libc::NETLINK_ROUTE;
pub const NETLINK_NETFILTER: libc::c_int = libc::NETLINK_NETFILTER;

/// A netlink socket for request/reply conversations, replies matched by sequence number.
#[derive(Debug)]
pub struct NlSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl NlSocket {
    /// Opens a netlink socket of `protocol` with a receive timeout, so a silent kernel cannot
    /// stall the capture.
    pub fn open(protocol: libc::c_int, timeout_ms: i64) -> io::Result<NlSocket> {
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_usec: ((timeout_ms % 1000) * 1000) as libc::suseconds_t,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        // Large dumps (tens of thousands of rules) arrive faster than they are read.
        let rcvbuf: libc::c_int = 4 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        Ok(NlSocket {
            fd,
            seq: 0,
            buf: vec![0; 256 << 10],
        })
    }

    /// The sequence number for the next request.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is readable for its length; the kernel is the implicit destination.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram into the reusable buffer; its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Sends a dump request (built with sequence number `seq`) and hands every reply message
    /// (header included) to `each` as it arrives, until `NLMSG_DONE`. A netlink error ends it
    /// as an error. Nothing is kept: a dump of tens of thousands of rules is parsed as it comes.
    pub fn dump_each(
        &mut self,
        request: &[u8],
        seq: u32,
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        self.send(request)?;
        loop {
            let n = self.recv()?;
            for m in nl::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => match m.error() {
                        Some(0) | None => {}
                        Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    },
                    _ => each(m.bytes),
                }
            }
        }
    }

    /// [`NlSocket::dump_each`], keeping every message.
    pub fn dump(&mut self, request: &[u8], seq: u32) -> io::Result<Vec<Vec<u8>>> {
        let mut out = vec![];
        self.dump_each(request, seq, |m| out.push(m.to_vec()))?;
        Ok(out)
    }

    /// Sends a single GET request and returns its one reply; `Ok(None)` when the kernel says
    /// there is no such object (ENOENT).
    pub fn get(&mut self, request: &[u8], seq: u32) -> io::Result<Option<Vec<u8>>> {
        self.send(request)?;
        loop {
            let n = self.recv()?;
            for m in nl::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                return match m.error() {
                    Some(libc::ENOENT) => Ok(None),
                    Some(0) => continue,
                    Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                    None => Ok(Some(m.bytes.to_vec())),
                };
            }
        }
    }
}

/// Sends one route-netlink dump request (`RTM_GETLINK`, `RTM_GETADDR`, …) for `family` and
/// returns every reply message (header included) until `NLMSG_DONE`.
pub fn netlink_dump(msg_type: u16, family: u8) -> io::Result<Vec<Vec<u8>>> {
    let mut sock = NlSocket::open(NETLINK_ROUTE, 2000)?;
    let seq = sock.next_seq();
    // A 16-byte ifinfomsg (ifaddrmsg is a prefix of it); only the family is set.
    let mut head = [0u8; 16];
    head[0] = family;
    let request = nl::Request::new(msg_type, nl::NLM_F_DUMP, &head).finish(seq);
    sock.dump(&request, seq)
}

const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;

/// `getsockopt` into `buf`, which holds the request on the way in; returns the length written.
fn getsockopt_into(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is readable and writable for `len` bytes; `len` is passed by pointer.
    let rc = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// A raw IP socket, only ever used for the x_tables and ipset `getsockopt` reads.
fn raw_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain syscall; the result is checked.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Reads an iptables-legacy table: the `ipt_getinfo` reply and the entries blob. The caller
/// checks `/proc/net/ip_tables_names` first: asking for a table the kernel has not
/// instantiated would instantiate it.
pub fn iptables_table(v6: bool, table: &str) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use crate::evidence::legacy;
    let fd = raw_socket(v6)?;
    let level = if v6 { libc::SOL_IPV6 } else { libc::SOL_IP };
    let mut info = legacy::info_request(table).to_vec();
    getsockopt_into(fd.as_raw_fd(), level, IPT_SO_GET_INFO, &mut info)?;
    // The table may change between the two calls: the kernel then refuses the size (EAGAIN);
    // read the size again and retry a few times.
    for _ in 0..4 {
        let parsed = legacy::parse_info(&info)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short ipt_getinfo"))?;
        let mut entries = legacy::entries_request(table, parsed.size);
        match getsockopt_into(fd.as_raw_fd(), level, IPT_SO_GET_ENTRIES, &mut entries) {
            Ok(_) => {
                // In place: the blob may be megabytes.
                entries.drain(..legacy::GET_ENTRIES_HEAD);
                return Ok((info, entries));
            }
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => {
                info = legacy::info_request(table).to_vec();
                getsockopt_into(fd.as_raw_fd(), level, IPT_SO_GET_INFO, &mut info)?;
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

const SO_IP_SET: libc::c_int = 83;
const IP_SET_OP_VERSION: u32 = 0x100;
const IP_SET_OP_GET_BYINDEX: u32 = 0x7;

/// The names of ipsets by index (what `-m set --match-set` refers to). Unknown indexes are
/// left out.
pub fn ipset_names(indexes: &[u16]) -> io::Result<Vec<(u16, String)>> {
    let fd = raw_socket(false)?;
    // struct ip_set_req_version { op; version; }
    let mut version = [0u8; 8];
    version[..4].copy_from_slice(&IP_SET_OP_VERSION.to_ne_bytes());
    getsockopt_into(fd.as_raw_fd(), libc::SOL_IP, SO_IP_SET, &mut version)?;
    let protocol = u32::from_ne_bytes([version[4], version[5], version[6], version[7]]);
    let mut out = vec![];
    for &index in indexes {
        // struct ip_set_req_get_set { op; version; union { char name[32]; u16 index; } }
        let mut req = [0u8; 40];
        req[..4].copy_from_slice(&IP_SET_OP_GET_BYINDEX.to_ne_bytes());
        req[4..8].copy_from_slice(&protocol.to_ne_bytes());
        req[8..10].copy_from_slice(&index.to_ne_bytes());
        if getsockopt_into(fd.as_raw_fd(), libc::SOL_IP, SO_IP_SET, &mut req).is_ok() {
            let name = nl::string(&req[8..40]);
            if !name.is_empty() {
                out.push((index, name));
            }
        }
    }
    Ok(out)
}

//! Netlink framing shared by every reader: walking messages and attributes of a reply, and
//! building requests. Pure; a malformed message or attribute ends the walk, it never panics.

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// Attribute types carry flag bits (nested, byte order) above these.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One netlink message: its type, flags, sequence number and payload (after the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl Message<'_> {
    /// The error code of an `NLMSG_ERROR` message (0 is an acknowledgement), as a positive errno.
    pub fn error(&self) -> Option<i32> {
        (self.kind == NLMSG_ERROR).then(|| i32_ne(self.payload).map_or(0, |code| -code))
    }
}

/// Iterates the messages of one datagram, stopping at the first whose length is impossible.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        let len = u32_ne(buf)? as usize;
        let kind = u16::from_ne_bytes([*buf.get(4)?, *buf.get(5)?]);
        let flags = u16::from_ne_bytes([*buf.get(6)?, *buf.get(7)?]);
        let seq = u32_ne(buf.get(8..)?)?;
        if len < NLMSG_HDRLEN {
            return None;
        }
        let payload = buf.get(NLMSG_HDRLEN..len)?;
        let bytes = &buf[..len];
        buf = buf.get(align(len)..).unwrap_or_default();
        Some(Message {
            kind,
            flags,
            seq,
            payload,
            bytes,
        })
    })
}

/// Iterates the (type, payload) attributes in `buf`, stopping at the first malformed one.
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & NLA_TYPE_MASK;
        let payload = buf.get(4..len)?;
        buf = buf.get(align(len)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The payload of the first attribute of type `kind`.
pub fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

pub fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

pub fn u16_ne(b: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(..2)?.try_into().ok()?))
}

pub fn u32_ne(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn i32_ne(b: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn u64_ne(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

pub fn u16_be(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

pub fn u32_be(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn u64_be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated (or unterminated) string attribute.
pub fn string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A string from the kernel made safe to print: up to its NUL, control characters written as
/// `\xNN` (a rule comment or a chain name may hold anything; the report must stay one line
/// and carry no terminal escape).
pub fn text(b: &[u8]) -> String {
    let raw = string(b);
    if !raw.chars().any(char::is_control) {
        return raw;
    }
    raw.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\x{:02x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Builds one request message: header, a fixed family header, then attributes.
#[derive(Debug, Clone)]
pub struct Request {
    buf: Vec<u8>,
    /// Start offsets of the nested attributes still open.
    open: Vec<usize>,
}

impl Request {
    /// A request of `kind` with `flags` (`NLM_F_REQUEST` is added) and the fixed header `head`.
    pub fn new(kind: u16, flags: u16, head: &[u8]) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(head);
        buf.resize(align(buf.len()), 0);
        Request {
            buf,
            open: Vec::new(),
        }
    }

    pub fn attr(mut self, kind: u16, payload: &[u8]) -> Request {
        self.buf
            .extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute (`NLA_F_NESTED` set); close it with [`Request::end`].
    pub fn nest(mut self, kind: u16) -> Request {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | 0x8000).to_ne_bytes());
        self
    }

    pub fn end(mut self) -> Request {
        if let Some(start) = self.open.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message with its sequence number; open nests are closed.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        while !self.open.is_empty() {
            self = self.end();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_request_walks_back() {
        let msg = Request::new(0x0a06, NLM_F_DUMP, &[2, 0, 0, 0])
            .attr(1, b"nat\0")
            .nest(2)
            .attr(1, &[1, 2])
            .end()
            .finish(7);
        let all: Vec<_> = messages(&msg).collect();
        assert_eq!(all.len(), 1);
        let m = all[0];
        assert_eq!(
            (m.kind, m.flags, m.seq),
            (0x0a06, NLM_F_DUMP | NLM_F_REQUEST, 7)
        );
        let body = &m.payload[4..];
        assert_eq!(string(attr(body, 1).unwrap()), "nat");
        let nested = attr(body, 2).unwrap();
        assert_eq!(attr(nested, 1), Some(&[1u8, 2][..]));
    }

    #[test]
    fn impossible_lengths_end_the_walk() {
        assert_eq!(messages(&[0xff; 15]).count(), 0);
        let mut msg = Request::new(1, 0, &[]).finish(1);
        msg[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(messages(&msg).count(), 0);
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn kernel_strings_print_on_one_line() {
        assert_eq!(text(b"cali:x\0junk"), "cali:x");
        assert_eq!(text(b"a\nb\x1b[31m"), "a\\x0ab\\x1b[31m");
    }

    #[test]
    fn error_messages_give_errno() {
        let mut msg = Request::new(NLMSG_ERROR, 0, &(-1i32).to_ne_bytes()).finish(3);
        assert_eq!(messages(&msg).next().unwrap().error(), Some(1));
        msg[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(messages(&msg).next().unwrap().error(), Some(0));
    }
}

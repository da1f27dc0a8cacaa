//! Reviewed unsafe code for packet capture: AF_PACKET sockets with a TPACKET_V3 receive ring and
//! `poll` (netlink sockets live in the sibling `kernel` module). Everything above this module
//! works on safe slices and plain values.
//!
//! A capture socket is built in the order that leaves no window for unfiltered packets:
//! `socket(AF_PACKET, SOCK_RAW, 0)` (protocol 0 receives nothing), `SO_ATTACH_FILTER`,
//! `PACKET_VERSION = TPACKET_V3`, `PACKET_RX_RING`, `mmap`, and only then `bind` to
//! `ETH_P_ALL` on one interface index. The socket never joins a multicast or promiscuous
//! membership, so the interface's promiscuity is untouched.
//!
//! Ring memory is shared with the kernel. A block belongs to userspace only while its
//! `block_status` has `TP_STATUS_USER`; that word is read with acquire ordering before the block
//! is viewed as a slice, and written back with release ordering after the last read. Nothing
//! reads a block the kernel owns.

#![allow(unsafe_code)]

use crate::bpf::Insn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const TPACKET_V3: libc::c_int = 2;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const PACKET_OUTGOING: u8 = 4;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` follows the header.
const TPACKET3_HDRLEN: usize = 48;

/// `struct tpacket_req3` (linux/if_packet.h).
#[repr(C)]
#[derive(Debug, Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Debug, Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// Size of one receive ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSize {
    /// Bytes per block, a multiple of the page size.
    pub block_size: u32,
    pub block_nr: u32,
    /// How long the kernel keeps a partly filled block before handing it over.
    pub retire_ms: u32,
}

impl RingSize {
    pub fn bytes(&self) -> usize {
        self.block_size as usize * self.block_nr as usize
    }
}

/// Which step of opening a socket failed, and how.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// EPERM/EACCES on `socket(AF_PACKET)`: the process lacks CAP_NET_RAW.
    #[error("opening a packet socket was refused: {0}")]
    NotPermitted(#[source] io::Error),
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

fn last_error(step: &'static str) -> SocketError {
    SocketError::Io {
        step,
        source: io::Error::last_os_error(),
    }
}

/// `setsockopt(2)` of a plain value; the other reviewed module of raw calls uses it too.
pub(super) fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` and the length passed is its size; the
    // kernel only reads that many bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One packet as the ring delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Kernel receive timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The packet was sent out of the interface (`PACKET_OUTGOING`), not received.
    pub outgoing: bool,
    /// The captured bytes from the link header on (cut to the filter's snap length).
    pub data: &'a [u8],
}

/// An AF_PACKET socket bound to one interface, filtered in the kernel, with a TPACKET_V3 ring.
pub struct PacketRing {
    fd: OwnedFd,
    map: *mut u8,
    size: RingSize,
    next_block: usize,
}

impl std::fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketRing")
            .field("fd", &self.fd)
            .field("size", &self.size)
            .finish()
    }
}

impl PacketRing {
    /// Opens the socket, attaches `program`, maps the ring, then binds to `ifindex`.
    pub fn open(ifindex: u32, program: &[Insn], size: RingSize) -> Result<Self, SocketError> {
        // SAFETY: plain syscall with constant arguments; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => SocketError::NotPermitted(err),
                _ => SocketError::Io {
                    step: "socket(AF_PACKET)",
                    source: err,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor this function owns from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut filter: Vec<libc::sock_filter> = program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_mut_ptr(),
        };
        // The kernel copies the program during the call; `filter` outlives it.
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog).map_err(|source| {
            SocketError::Io {
                step: "attaching the BPF filter",
                source,
            }
        })?;
        setsockopt(raw, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3).map_err(|source| {
            SocketError::Io {
                step: "selecting TPACKET_V3",
                source,
            }
        })?;
        let req = TpacketReq3 {
            block_size: size.block_size,
            block_nr: size.block_nr,
            frame_size: 2048,
            frame_nr: size.block_size / 2048 * size.block_nr,
            retire_blk_tov: size.retire_ms,
            ..TpacketReq3::default()
        };
        setsockopt(raw, libc::SOL_PACKET, PACKET_RX_RING, &req).map_err(|source| {
            SocketError::Io {
                step: "creating the receive ring",
                source,
            }
        })?;
        // SAFETY: maps the ring the kernel just allocated for this descriptor; length and flags
        // are those packet(7) prescribes. The result is checked against MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size.bytes(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                raw,
                0,
            )
        };
        // MAP_LOCKED can fail under RLIMIT_MEMLOCK; the ring works unlocked too.
        let map = if map == libc::MAP_FAILED {
            // SAFETY: as above, without MAP_LOCKED.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size.bytes(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    raw,
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return Err(last_error("mapping the receive ring"));
            }
            map
        } else {
            map
        };
        let ring = PacketRing {
            fd,
            map: map.cast(),
            size,
            next_block: 0,
        };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_error("binding to the interface"));
        }
        Ok(ring)
    }

    pub fn size(&self) -> RingSize {
        self.size
    }

    /// Hands every packet of every block the kernel has filled to `each`, then returns the
    /// blocks to the kernel. Returns the number of packets.
    pub fn drain(&mut self, mut each: impl FnMut(Frame<'_>)) -> usize {
        let mut count = 0;
        let block_size = self.size.block_size as usize;
        for _ in 0..self.size.block_nr {
            // SAFETY: `next_block < block_nr`, so the block lies inside the mapping.
            let block = unsafe { self.map.add(self.next_block * block_size) };
            // SAFETY: `block_status` is the u32 at offset 8 of a tpacket_block_desc, 4-aligned
            // (blocks are page aligned); the kernel writes it concurrently, hence atomic.
            let status = unsafe { &*(block.add(8) as *const AtomicU32) };
            if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            {
                // SAFETY: TP_STATUS_USER means the kernel handed this block over and will not
                // write it until the status is set back to TP_STATUS_KERNEL below, after the
                // last use of this slice.
                let bytes = unsafe { std::slice::from_raw_parts(block as *const u8, block_size) };
                count += read_block(bytes, &mut each);
            }
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            self.next_block = (self.next_block + 1) % self.size.block_nr as usize;
        }
        count
    }

    /// Packets delivered and dropped since the previous call (the kernel resets its counters
    /// on every read).
    pub fn take_stats(&self) -> io::Result<(u64, u64)> {
        let mut stats = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: `stats` is writable for `len` bytes and `len` is passed by pointer as
        // getsockopt requires.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut stats as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // tp_packets counts drops too.
        let drops = u64::from(stats.drops);
        Ok((u64::from(stats.packets).saturating_sub(drops), drops))
    }
}

impl AsFd for PacketRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping of `size.bytes()` made in `open`; no slice of it outlives
        // `drain`, so nothing refers to it any more.
        unsafe {
            libc::munmap(self.map.cast(), self.size.bytes());
        }
    }
}

/// Walks the packets of one TPACKET_V3 block with bounds checks on every offset the kernel
/// wrote, so a corrupt block ends the walk instead of reading out of bounds.
fn read_block(block: &[u8], each: &mut impl FnMut(Frame<'_>)) -> usize {
    let u32_at = |buf: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |buf: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
    };
    let (Some(num_pkts), Some(first)) = (u32_at(block, 12), u32_at(block, 16)) else {
        return 0;
    };
    let mut at = first as usize;
    let mut seen = 0;
    for _ in 0..num_pkts {
        let Some(hdr) = block.get(at..) else { break };
        let (Some(next), Some(sec), Some(nsec), Some(snaplen), Some(mac)) = (
            u32_at(hdr, 0),
            u32_at(hdr, 4),
            u32_at(hdr, 8),
            u32_at(hdr, 12),
            u16_at(hdr, 24),
        ) else {
            break;
        };
        // sockaddr_ll.sll_pkttype sits 10 bytes into the address after the header.
        let outgoing = hdr.get(TPACKET3_HDRLEN + 10) == Some(&PACKET_OUTGOING);
        let start = usize::from(mac);
        if let Some(data) = hdr.get(start..start.saturating_add(snaplen as usize)) {
            each(Frame {
                ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
                outgoing,
                data,
            });
            seen += 1;
        }
        if next == 0 {
            break;
        }
        at = at.saturating_add(next as usize);
    }
    seen
}

/// What `poll` reported for one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    /// POLLERR/POLLHUP/POLLNVAL: the interface went down or vanished.
    pub error: bool,
}

/// Waits on a set of descriptors, reusing its arrays from one wait to the next.
#[derive(Debug, Default)]
pub struct Poller {
    pollfds: Vec<libc::pollfd>,
    ready: Vec<Readiness>,
}

impl Poller {
    /// Waits until one of `fds` is readable or in error, or `timeout_ms` passes. Returns one
    /// [`Readiness`] per descriptor, in order (all clear when a signal interrupted the wait).
    pub fn wait<'a>(
        &mut self,
        fds: impl IntoIterator<Item = BorrowedFd<'a>>,
        timeout_ms: i32,
    ) -> io::Result<&[Readiness]> {
        self.pollfds.clear();
        self.pollfds.extend(fds.into_iter().map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: `pollfds` is a valid array of `len` pollfd structures for the whole call.
        let rc = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        self.ready.clear();
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            self.ready.resize(self.pollfds.len(), Readiness::default());
            return Ok(&self.ready);
        }
        self.ready.extend(self.pollfds.iter().map(|p| Readiness {
            readable: p.revents & libc::POLLIN != 0,
            error: p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        }));
        Ok(&self.ready)
    }
}

/// Reads and clears a socket's pending error (`SO_ERROR`), so `poll` stops reporting it.
pub fn take_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    let mut code: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `code` is writable for `len` bytes; `len` is passed by pointer.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut code as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    match (rc, code) {
        (0, 0) => None,
        (0, code) => Some(io::Error::from_raw_os_error(code)),
        _ => Some(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel lays it out: descriptor, then packets chained by `tp_next_offset`.
    fn block(packets: &[(&[u8], u8)]) -> Vec<u8> {
        let mut block = vec![0u8; 4096];
        block[12..16].copy_from_slice(&(packets.len() as u32).to_ne_bytes());
        block[16..20].copy_from_slice(&48u32.to_ne_bytes());
        let mut at = 48;
        for (i, (data, pkttype)) in packets.iter().enumerate() {
            let mac = TPACKET3_HDRLEN + 32;
            let next = if i + 1 == packets.len() {
                0
            } else {
                (mac + data.len() + 15) & !15
            };
            let hdr = &mut block[at..];
            hdr[0..4].copy_from_slice(&(next as u32).to_ne_bytes());
            hdr[4..8].copy_from_slice(&7u32.to_ne_bytes());
            hdr[8..12].copy_from_slice(&(i as u32).to_ne_bytes());
            hdr[12..16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            hdr[24..26].copy_from_slice(&(mac as u16).to_ne_bytes());
            hdr[TPACKET3_HDRLEN + 10] = *pkttype;
            hdr[mac..mac + data.len()].copy_from_slice(data);
            at += next;
        }
        block
    }

    #[test]
    fn block_walk_reads_every_packet_with_direction_and_time() {
        let b = block(&[(b"first", 0), (b"second!", PACKET_OUTGOING)]);
        let mut seen = Vec::new();
        let n = read_block(&b, &mut |f: Frame<'_>| {
            seen.push((f.data.to_vec(), f.outgoing, f.ts_ns))
        });
        assert_eq!(n, 2);
        assert_eq!(seen[0], (b"first".to_vec(), false, 7_000_000_000));
        assert_eq!(seen[1], (b"second!".to_vec(), true, 7_000_000_001));
    }

    #[test]
    fn corrupt_offsets_end_the_walk() {
        let mut b = block(&[(b"first", 0), (b"second", 0)]);
        b[16..20].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(read_block(&b, &mut |_: Frame<'_>| {}), 0);
        let mut b = block(&[(b"first", 0)]);
        b[48 + 12..48 + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(read_block(&b, &mut |_: Frame<'_>| {}), 0);
        assert_eq!(read_block(&[0u8; 10], &mut |_: Frame<'_>| {}), 0);
    }
}

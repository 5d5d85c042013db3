//! The ingest UDP socket: bound here (not by quinn) so that its kernel
//! buffers can be sized first, and watched for datagrams the kernel dropped.
//!
//! Every phone's packets arrive on one socket. When the server is busy for a
//! moment, datagrams wait in the socket's receive buffer; once it is full the
//! kernel drops them, and each drop costs a phone a QUIC loss recovery (a
//! resend, and hundreds of milliseconds of acknowledgement latency). The
//! system default (about 208 KiB on Linux) holds a few milliseconds of
//! 300 Mbit/s.

use std::net::{SocketAddr, UdpSocket};

use anyhow::{Context, Result};

/// What the socket got.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpBuffers {
    /// Receive buffer the kernel reports (Linux counts its bookkeeping too,
    /// so this is about twice what was set).
    pub receive: usize,
    /// Send buffer the kernel reports.
    pub send: usize,
    /// Socket inode, to find the socket's drop counter (Linux); 0 if unknown.
    pub(crate) inode: u64,
    /// Datagrams quinn may send in one `sendmsg` (UDP GSO, segmentation
    /// offload); 1: none.
    pub gso_segments: usize,
    /// Datagrams the kernel may hand over in one `recvmsg` (UDP GRO,
    /// receive offload); 1: none.
    pub gro_segments: usize,
}

/// Bind `addr` with receive and send buffers of `bytes` (0: system default).
pub(crate) fn bind(addr: SocketAddr, bytes: usize) -> Result<(UdpSocket, UdpBuffers)> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding udp {addr}"))?;
    let mut bufs = size_buffers(&socket, bytes);
    // What quinn's own socket state will find: the same probe of the same
    // socket (it enables GRO where the kernel has it).
    match quinn_udp::UdpSocketState::new(quinn_udp::UdpSockRef::from(&socket)) {
        Ok(state) => {
            bufs.gso_segments = state.max_gso_segments();
            bufs.gro_segments = state.gro_segments();
        }
        Err(e) => tracing::warn!(error = %e, "probing the ingest UDP socket's offloads"),
    }
    tracing::info!(
        gso_segments = bufs.gso_segments,
        gro_segments = bufs.gro_segments,
        "ingest UDP offloads (GSO: datagrams per send; GRO: per receive; 1 is none)"
    );
    if bytes > 0 && bufs.receive < bytes {
        tracing::warn!(
            asked = bytes,
            got = bufs.receive,
            "the ingest UDP receive buffer is smaller than ingest.udp_buffer_bytes; under load the kernel \
             will drop phones' packets: raise net.core.rmem_max (sysctl) or give the server CAP_NET_ADMIN"
        );
    } else {
        tracing::info!(
            receive = bufs.receive,
            send = bufs.send,
            "ingest UDP socket buffers"
        );
    }
    Ok((socket, bufs))
}

#[cfg(unix)]
fn size_buffers(socket: &UdpSocket, bytes: usize) -> UdpBuffers {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    if bytes > 0 {
        let want = bytes.min(i32::MAX as usize) as libc::c_int;
        for (force, plain) in [
            (force_opt(libc::SO_RCVBUF), libc::SO_RCVBUF),
            (force_opt(libc::SO_SNDBUF), libc::SO_SNDBUF),
        ] {
            // The forcing option passes the cap for a privileged server;
            // otherwise the plain option gets as close as the cap allows.
            if force.is_none_or(|f| setsockopt(fd, f, want).is_err()) {
                if let Err(e) = setsockopt(fd, plain, want) {
                    tracing::warn!(error = %e, option = plain, "sizing the ingest UDP socket buffer");
                }
            }
        }
    }
    UdpBuffers {
        receive: getsockopt(fd, libc::SO_RCVBUF).unwrap_or(0),
        send: getsockopt(fd, libc::SO_SNDBUF).unwrap_or(0),
        inode: inode(socket),
        gso_segments: 1,
        gro_segments: 1,
    }
}

#[cfg(not(unix))]
fn size_buffers(_socket: &UdpSocket, _bytes: usize) -> UdpBuffers {
    UdpBuffers::default()
}

#[cfg(target_os = "linux")]
fn force_opt(opt: libc::c_int) -> Option<libc::c_int> {
    match opt {
        libc::SO_RCVBUF => Some(libc::SO_RCVBUFFORCE),
        libc::SO_SNDBUF => Some(libc::SO_SNDBUFFORCE),
        _ => None,
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn force_opt(_opt: libc::c_int) -> Option<libc::c_int> {
    None
}

#[cfg(unix)]
fn setsockopt(fd: libc::c_int, opt: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call; the value
    // pointer and length describe a live c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(unix)]
fn getsockopt(fd: libc::c_int, opt: libc::c_int) -> std::io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; value and len point to live locals of
    // the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value.max(0) as usize)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(unix)]
fn inode(socket: &UdpSocket) -> u64 {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    // A socket's fstat gives its inode, the key of /proc/net/udp.
    socket
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Datagrams the kernel dropped on the socket with this inode (Linux:
/// the `drops` column of /proc/net/udp and udp6). `None` where unknown.
pub(crate) fn drops(inode: u64) -> Option<u64> {
    if inode == 0 {
        return None;
    }
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|table| drops_in(&table, inode))
}

/// The `drops` column of the /proc/net/udp line whose inode is `inode`.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref
    // pointer drops.
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        cols.get(12)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_from_the_line_of_the_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:5F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 0100007F:5F92 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 5\n";
        assert_eq!(drops_in(table, 777), Some(5));
        assert_eq!(drops_in(table, 4242), Some(17));
        assert_eq!(drops_in(table, 1), None);
        assert_eq!(drops_in("header only\n", 777), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_socket_gets_the_buffer_asked_for_up_to_the_cap() {
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (_s, plain) = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let want = 8 * 1024 * 1024;
        let (_s, sized) = bind("127.0.0.1:0".parse().unwrap(), want).unwrap();
        // Without sizing the socket keeps the system default; with it, at
        // least what the cap allows (more when the process may force it).
        assert!(
            sized.receive >= want.min(cap),
            "asked {want}, cap {cap}, got {} (default {})",
            sized.receive,
            plain.receive
        );
        assert!(sized.inode != 0);
        // A socket nobody sends to has dropped nothing.
        assert_eq!(drops(sized.inode), Some(0));
    }
}

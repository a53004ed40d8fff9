//! `TCP_NODELAY` on the sink's PostgreSQL connections.
//!
//! sqlx 0.9.0 opens its TCP connections with Nagle's algorithm on (`TCP_NODELAY` unset;
//! the setting was dropped in that release and restored upstream after it, sqlx issue
//! 4335), and offers no hook to set it. With Nagle on, the last part of a statement
//! larger than one TCP segment (a batch's `UNNEST` arrays: tens of kilobytes) waits in
//! the client's kernel until the server acknowledges the rest, and the server delays
//! that acknowledgement by up to 40 ms on Linux. Measured at 5k events/s: the
//! journal-entries task spent 120–190 ms per batch writing about 30 ms of SQL
//! (docs/notes/sink-write.md).
//!
//! libpq, tokio-postgres and the JDBC driver set `TCP_NODELAY` on every connection; so
//! does this module, from the pool's `after_connect` hook. A connection does not expose
//! its socket, so the sockets are found among the process's open file descriptors
//! (`/proc/self/fd`, Linux only): every TCP socket connected to the database's address
//! (`sink.database_url`'s host, resolved, and port) gets `TCP_NODELAY`. They are all
//! connections to the ledger database's server, so setting it on another pool's
//! connection there (a report's) does no harm. A Unix-domain socket connection has no
//! Nagle's algorithm to turn off.

use std::collections::HashSet;
use std::net::SocketAddr;

use sqlx::postgres::PgConnectOptions;
use tracing::{debug, warn};

/// Sets `TCP_NODELAY` on this process's TCP connections to the server `options` name;
/// called for each new connection. Never fails the connection: an address that does not
/// resolve or a socket that cannot be set is logged (warn) and left as it is.
pub async fn disable_nagle(options: &PgConnectOptions) {
    let host = options.get_host();
    if host.starts_with('/') {
        debug!("ledger connection over a Unix-domain socket: no Nagle's algorithm to turn off");
        return;
    }
    let servers: HashSet<SocketAddr> = match tokio::net::lookup_host((host, options.get_port()))
        .await
    {
        Ok(addresses) => addresses.map(canonical).collect(),
        Err(e) => {
            warn!(error = %e, "could not resolve the ledger database's host to set TCP_NODELAY");
            return;
        }
    };
    match tokio::task::spawn_blocking(move || set_nodelay_on_sockets_to(&servers)).await {
        Ok(Ok(sockets)) => debug!(
            connections = sockets.connected,
            newly_set = sockets.newly_set,
            "TCP_NODELAY set on the ledger connections"
        ),
        Ok(Err(e)) => warn!(
            error = %e,
            "could not set TCP_NODELAY on the ledger connections: a statement may wait up to \
             40 ms for a TCP acknowledgement"
        ),
        Err(e) => warn!(error = %e, "setting TCP_NODELAY on the ledger connections panicked"),
    }
}

/// `address` with an IPv4-mapped IPv6 address in its IPv4 form.
pub fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// What [`set_nodelay_on_sockets_to`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodelaySockets {
    /// Sockets of this process connected to one of the servers.
    pub connected: usize,
    /// Those of them that had Nagle's algorithm on and now have `TCP_NODELAY`.
    pub newly_set: usize,
}

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to one of `servers`
/// (addresses with IPv4-mapped IPv6 addresses in their IPv4 form).
///
/// # Errors
/// When `/proc/self/fd` cannot be read or `setsockopt` fails.
#[cfg(target_os = "linux")]
pub fn set_nodelay_on_sockets_to(servers: &HashSet<SocketAddr>) -> std::io::Result<NodelaySockets> {
    use std::os::fd::{BorrowedFd, RawFd};

    let mut sockets = NodelaySockets {
        connected: 0,
        newly_set: 0,
    };
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(fd) = entry?.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: `fd` is only used for `getpeername` and, on a socket connected to the
        // database server, `setsockopt(TCP_NODELAY)`; the borrow ends with this iteration
        // and nothing is closed. Should another thread close `fd` meanwhile, the calls
        // fail with EBADF, or act on the socket that took its number, which is set only
        // when it too is connected to the database server.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if !servers.contains(&canonical(peer)) {
            continue;
        }
        sockets.connected += 1;
        if !socket.tcp_nodelay()? {
            socket.set_tcp_nodelay(true)?;
            sockets.newly_set += 1;
        }
    }
    Ok(sockets)
}

/// Off Linux there is no `/proc/self/fd` to find the sockets in: nothing is set.
///
/// # Errors
/// None.
#[cfg(not(target_os = "linux"))]
pub fn set_nodelay_on_sockets_to(
    _servers: &HashSet<SocketAddr>,
) -> std::io::Result<NodelaySockets> {
    Ok(NodelaySockets {
        connected: 0,
        newly_set: 0,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::collections::HashSet;
    use std::net::{TcpListener, TcpStream};

    use super::{NodelaySockets, set_nodelay_on_sockets_to};

    #[test]
    fn sets_nodelay_on_the_sockets_connected_to_the_server_only() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(
            !to_server.nodelay().unwrap(),
            "Nagle's algorithm is on by default"
        );
        let servers = HashSet::from([server.local_addr().unwrap()]);
        assert_eq!(
            set_nodelay_on_sockets_to(&servers).unwrap(),
            NodelaySockets {
                connected: 1,
                newly_set: 1
            }
        );
        assert!(to_server.nodelay().unwrap());
        assert!(
            !to_other.nodelay().unwrap(),
            "a socket to another server is left alone"
        );
        assert_eq!(
            set_nodelay_on_sockets_to(&servers).unwrap(),
            NodelaySockets {
                connected: 1,
                newly_set: 0
            },
            "a socket already set is found, and left as it is"
        );
    }
}

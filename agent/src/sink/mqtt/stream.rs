//! A device's socket: plain TCP (optionally bound to a source address), TLS over it, or
//! a WebSocket over either (`ws.rs`).
//!
//! Plain TCP reads wait for readiness before they take a buffer, so an idle connection
//! holds no read buffer at all: that is most of what keeps a device near 1-2 KB. A plain
//! socket is shared (`Arc`) so that the sink can write a publish straight into it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::BytesMut;
use pluribus_common::spec::BrokerUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::ws::{self, Ws};

/// How much a read may take at once.
const READ_CHUNK: usize = 4096;

/// A connected socket.
pub enum Stream {
    /// Plain TCP, shared with the sink for direct writes.
    Plain(Arc<TcpStream>),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// MQTT over WebSocket, over TCP or TLS.
    Ws(Box<Ws>),
}

/// Why a connect failed, as counted in `connect_failures`.
pub fn io_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => "address",
        _ => match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => "files",
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable",
            _ => "io",
        },
    }
}

/// Resolves the broker (an IP address is used as is).
pub async fn resolve(url: &BrokerUrl) -> Result<SocketAddr, &'static str> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or("dns")
}

/// Connects over TCP from `source` (if any). With a source address the socket is bound
/// with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port per destination and one
/// source address serves many brokers.
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        if ip.is_ipv4() {
            let one: libc::c_int = 1;
            // SAFETY: a valid fd we own, a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Wraps `tcp` in TLS for `host`.
async fn tls(
    tcp: TcpStream,
    connector: &TlsConnector,
    host: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    connector.connect(name, tcp).await
}

/// What `url` asks for over `tcp`: TLS (`mqtts://`, `wss://`, with `connector`), then the
/// WebSocket handshake (`ws://`, `wss://`). Errors are `connect_failures` reasons: "tls",
/// "websocket".
pub async fn open(
    tcp: TcpStream,
    url: &BrokerUrl,
    connector: Option<&TlsConnector>,
) -> Result<Stream, &'static str> {
    let transport = match (url.tls, connector) {
        (false, _) => ws::Transport::Plain(tcp),
        (true, Some(c)) => {
            ws::Transport::Tls(Box::new(tls(tcp, c, &url.host).await.map_err(|_| "tls")?))
        }
        (true, None) => return Err("tls"),
    };
    let Some(path) = &url.ws_path else {
        return Ok(match transport {
            ws::Transport::Plain(t) => Stream::Plain(Arc::new(t)),
            ws::Transport::Tls(t) => Stream::Tls(t),
        });
    };
    // Boxed: the handshake future is large, and inline it would grow every connect
    // (plain ones too), which fragments the heap of an agent connecting thousands.
    let ws = Box::pin(ws::handshake(transport, url, path))
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "websocket handshake failed");
            "websocket"
        })?;
    Ok(Stream::Ws(Box::new(ws)))
}

impl Stream {
    /// Reads what is there into `buf` (growing it); 0 means the broker closed.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(s) => loop {
                s.readable().await?;
                buf.reserve(READ_CHUNK);
                match s.try_read_buf(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Spurious readiness: do not wait holding an empty buffer.
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            },
            Self::Tls(s) => {
                buf.reserve(READ_CHUNK);
                s.read_buf(buf).await
            }
            Self::Ws(s) => s.read_some(buf).await,
        }
    }

    /// The shared plain socket, if this is one.
    pub fn plain(&self) -> Option<Arc<TcpStream>> {
        match self {
            Self::Plain(s) => Some(s.clone()),
            Self::Tls(_) | Self::Ws(_) => None,
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => {
                while !data.is_empty() {
                    s.writable().await?;
                    match s.try_write(data) {
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Self::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Self::Ws(s) => s.write_all(data).await,
        }
    }

    /// Closes the write side (after DISCONNECT).
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Self::Plain(s) => {
                // SAFETY: shutdown(2) on a socket we hold open.
                unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
                Ok(())
            }
            Self::Tls(s) => s.shutdown().await,
            Self::Ws(s) => {
                s.shutdown().await;
                Ok(())
            }
        };
    }
}

//! MQTT over WebSocket (`ws://`, `wss://`): tokio-tungstenite's client handshake and
//! framing over our own TCP or tokio-rustls stream (so `--ca`/`--cert`/`--key` apply to
//! `wss://` exactly as to `mqtts://`). Each write goes out as one Binary message; Binary
//! payloads read are appended to the connection's read buffer, so the MQTT codec never
//! sees the WebSocket at all.
//!
//! tungstenite keeps a read buffer per connection, allocated up front: it is set small
//! here ([`READ_BUFFER`]), since a device reads little more than acks and commands.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use pluribus_common::spec::BrokerUrl;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// tungstenite's read buffer per connection (its default is 128 KiB); a frame larger than
/// this is still read whole, in several reads.
const READ_BUFFER: usize = 1024;
/// The largest message accepted from the broker (commands and, for a subscriber, data).
const MAX_MESSAGE: usize = 1 << 20;

/// What the WebSocket runs over: TCP, or TLS over TCP.
pub enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A WebSocket connection carrying MQTT.
pub struct Ws(WebSocketStream<Transport>);

/// The upgrade request's URI: `ws://host:port/path` (brackets around an IPv6 address).
/// The scheme is `ws` even for `wss://`: TLS is already under `t`, and tungstenite only
/// takes the host and path from it.
fn request_uri(url: &BrokerUrl, path: &str) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    format!("ws://{host}:{}{path}", url.port)
}

/// The client handshake over `t`: `GET path` with `Sec-WebSocket-Protocol: mqtt`, which
/// the broker must accept.
pub async fn handshake(t: Transport, url: &BrokerUrl, path: &str) -> Result<Ws, WsError> {
    let mut req = request_uri(url, path).into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Written at once: the connection task already batches what it writes.
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (ws, _response) = tokio_tungstenite::client_async_with_config(req, t, Some(config)).await?;
    Ok(Ws(ws))
}

fn io_err(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::ConnectionAborted, "websocket closed")
        }
        e => io::Error::other(e),
    }
}

impl Ws {
    /// Appends the next Binary payload to `buf`; 0 means the broker closed. Pings are
    /// answered by tungstenite (the pong goes out on the next read or write), pongs and
    /// text are skipped. Cancel-safe: `next()` is, and a message taken is appended before
    /// anything else is awaited.
    pub async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    buf.extend_from_slice(&b);
                    return Ok(b.len());
                }
                Some(Ok(Message::Close(_))) | None => return Ok(0),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io_err(e)),
            }
        }
    }

    /// Sends `data` as one Binary message and flushes it (with any pong due).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0
            .send(Message::Binary(Bytes::copy_from_slice(data)))
            .await
            .map_err(io_err)
    }

    /// Sends a Close frame (after DISCONNECT); does not wait for the broker's.
    pub async fn shutdown(&mut self) {
        let _ = self.0.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    use super::*;

    /// Against a tokio-tungstenite server: the client asks for subprotocol `mqtt`, writes
    /// Binary messages, reads Binary payloads through a Ping (answered with a Pong) and a
    /// Text message, and reads a Close as 0.
    #[tokio::test]
    #[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
    async fn binary_both_ways_pings_answered_close_is_zero() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let check = |req: &Request, mut resp: Response| {
                assert_eq!(req.uri().path(), "/x/mqtt");
                let proto = req.headers().get("Sec-WebSocket-Protocol").cloned();
                assert_eq!(proto.as_ref().and_then(|p| p.to_str().ok()), Some("mqtt"));
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, check)
                .await
                .expect("server handshake");
            let got = ws.next().await.expect("a message").expect("ok");
            assert_eq!(got, Message::Binary(Bytes::from_static(b"\x10\x01")));
            ws.send(Message::Ping(Bytes::from_static(b"p")))
                .await
                .expect("ping");
            ws.send(Message::Text("ignored".into()))
                .await
                .expect("text");
            ws.send(Message::Binary(Bytes::from_static(b"\x20\x02\x00\x00")))
                .await
                .expect("binary");
            let pong = ws.next().await.expect("a pong").expect("ok");
            assert_eq!(pong, Message::Pong(Bytes::from_static(b"p")));
            ws.close(None).await.expect("close");
        });
        let url = BrokerUrl::parse("b", &format!("ws://127.0.0.1:{port}/x/mqtt")).expect("url");
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let path = url.ws_path.clone().unwrap_or_default();
        let mut ws = handshake(Transport::Plain(tcp), &url, &path)
            .await
            .expect("client handshake");
        ws.write_all(b"\x10\x01").await.expect("write");
        let mut buf = BytesMut::new();
        assert_eq!(ws.read_some(&mut buf).await.expect("read"), 4);
        assert_eq!(&buf[..], b"\x20\x02\x00\x00");
        assert_eq!(ws.read_some(&mut buf).await.expect("read close"), 0);
        server.await.expect("server");
    }

    #[test]
    fn request_uris() {
        let u = BrokerUrl::parse("b", "wss://[::1]:8443/a/mqtt").expect("url");
        assert_eq!(request_uri(&u, "/a/mqtt"), "ws://[::1]:8443/a/mqtt");
        let u = BrokerUrl::parse("b", "ws://broker").expect("url");
        let p = u.ws_path.clone().unwrap_or_default();
        assert_eq!(request_uri(&u, &p), "ws://broker:80/mqtt");
    }
}

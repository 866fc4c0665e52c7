//! A [`NatsServer`] that also speaks MQTT (nats-server's MQTT listener, on JetStream),
//! plain and over WebSocket (with or without TLS): a broker for the `mqtt` sink's `ws://`
//! and `wss://` tests, since Debian's mosquitto is built without websockets.

use std::path::{Path, PathBuf};

use super::NatsServer;
use crate::ports::free_port;

/// The MQTT and WebSocket listener ports of a server.
pub(super) struct MqttPorts {
    mqtt: u16,
    ws: u16,
    /// The WebSocket listener's certificate and key (PEM files), for `wss://`.
    ws_tls: Option<(PathBuf, PathBuf)>,
}

impl MqttPorts {
    /// Two ports that were free a moment ago.
    fn free(ws_tls: Option<(PathBuf, PathBuf)>) -> Self {
        Self {
            mqtt: free_port(),
            ws: free_port(),
            ws_tls,
        }
    }

    /// Writes the config file for these listeners into `dir` and returns its path. The
    /// command line adds the rest (name, JetStream, client and monitor ports), which MQTT
    /// needs too: a server name and JetStream.
    pub(super) fn write_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("mqtt.conf");
        let tls = match &self.ws_tls {
            None => "no_tls: true".to_string(),
            Some((cert, key)) => format!(
                "tls {{ cert_file: {:?}, key_file: {:?} }}",
                cert.display().to_string(),
                key.display().to_string()
            ),
        };
        let text = format!(
            "mqtt {{ listen: \"127.0.0.1:{}\" }}\nwebsocket {{ listen: \"127.0.0.1:{}\", {tls} }}\n",
            self.mqtt, self.ws
        );
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl NatsServer {
    /// Starts a server as [`start`](Self::start) does, with an MQTT listener
    /// ([`mqtt_port`](Self::mqtt_port)) and a WebSocket listener without TLS, which serves
    /// MQTT at path `/mqtt` ([`ws_url`](Self::ws_url)). MQTT topic `a/b` is NATS subject
    /// `a.b`, so a NATS subscriber sees what MQTT clients publish.
    pub fn start_with_mqtt() -> NatsServer {
        Self::start_on_free_ports(|| Some(MqttPorts::free(None)))
    }

    /// [`start_with_mqtt`](Self::start_with_mqtt), with TLS on the WebSocket listener
    /// (`cert` and `key`: PEM files), so [`ws_url`](Self::ws_url) is `wss://`.
    pub fn start_with_mqtt_tls(cert: &Path, key: &Path) -> NatsServer {
        let files = (cert.to_path_buf(), key.to_path_buf());
        Self::start_on_free_ports(|| Some(MqttPorts::free(Some(files.clone()))))
    }

    fn mqtt_ports(&self) -> &MqttPorts {
        self.mqtt.as_ref().unwrap_or_else(|| {
            panic!("this server has no MQTT listener: use NatsServer::start_with_mqtt()")
        })
    }

    /// The MQTT listener's port (plain TCP). Panics unless started with
    /// [`start_with_mqtt`](Self::start_with_mqtt).
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_ports().mqtt
    }

    /// The MQTT listener's URL, `mqtt://127.0.0.1:PORT`.
    pub fn mqtt_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port())
    }

    /// The WebSocket listener's port.
    pub fn ws_port(&self) -> u16 {
        self.mqtt_ports().ws
    }

    /// MQTT over WebSocket, `ws://127.0.0.1:PORT/mqtt` (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let m = self.mqtt_ports();
        let scheme = if m.ws_tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}/mqtt", m.ws)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    /// The server takes MQTT and WebSocket connections: a raw MQTT CONNECT gets a CONNACK,
    /// and an upgrade to `/mqtt` gets 101.
    #[test]
    fn mqtt_and_websocket_listeners_answer() {
        let server = NatsServer::start_with_mqtt();
        let mut s = TcpStream::connect(("127.0.0.1", server.mqtt_port())).expect("mqtt port");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // CONNECT, MQTT 3.1.1, clean session, keepalive 30 s, client id "t".
        s.write_all(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 1, b't',
        ])
        .expect("write CONNECT");
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).expect("CONNACK");
        assert_eq!(ack, [0x20, 2, 0, 0], "{}", server.log());

        let mut w = TcpStream::connect(("127.0.0.1", server.ws_port())).expect("ws port");
        w.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            w,
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        )
        .expect("write upgrade");
        let mut head = [0u8; 12];
        w.read_exact(&mut head).expect("response");
        assert_eq!(&head, b"HTTP/1.1 101", "{}", server.log());
        assert!(server.ws_url().ends_with("/mqtt"));
    }
}

//! One logon attempt, paced: TCP, TLS, Logon (35=A) with HeartBtInt and ResetSeqNumFlag,
//! and the acceptor's Logon reply, within the connect timeout.

use bytes::BytesMut;
use pluribus_common::spec::TemplateVars;

use super::{admin, clean, Conn, Gauge, Shared};
use crate::sink::fix::codec;
use crate::sink::mqtt::stream::{self, Stream};

/// The reason of a connection the acceptor closed before answering the Logon.
pub(super) const CLOSED: &str = "closed by the acceptor";

/// Logs on; the reason of a failure is what `connect_failures` counts: `refused`,
/// `timeout`, `tls`, `closed by the acceptor`, `logout: <the acceptor's text>`...
pub(super) async fn logon(
    conn: &Conn,
    sh: &Shared,
    attempt: u64,
) -> Result<(Stream, BytesMut), String> {
    let n = sh.cfg.hosts.len().max(1) as u64;
    let Some(url) = sh.cfg.hosts.get(((conn.index + attempt) % n) as usize) else {
        return Err("config".into());
    };
    let _permit = sh.pacer.acquire().await;
    let _g = Gauge::up(&sh.metrics.connecting);
    let handshake = async {
        let addr = stream::resolve(url).await?;
        let tcp = stream::tcp(addr, None)
            .await
            .map_err(|e| stream::io_reason(&e))?;
        let s = stream::open(tcp, url, sh.cfg.tls.as_ref()).await?;
        Ok::<_, &'static str>(s)
    };
    let exchange = async {
        let mut s = handshake.await.map_err(String::from)?;
        let mut buf = BytesMut::new();
        {
            let mut st = conn.lock();
            if sh.cfg.reset_seq_num {
                st.out_seq = 1;
                st.in_seq = 1;
            }
            st.out = BytesMut::new();
            let vars = TemplateVars {
                fleet: &conn.fleet,
                device_id: (!conn.shared).then_some(&*conn.device_id),
                index: conn.index,
            };
            let cfg = &sh.cfg;
            let hb = cfg.heartbeat.as_secs();
            let reset = cfg.reset_seq_num;
            let user = cfg.username.as_ref().map(|u| u.render(&vars));
            let pass = cfg.password.as_ref().map(|p| p.render(&vars));
            admin(&mut st, cfg, &conn.sender, "A", |w| {
                w.num(98, 0).num(108, hb);
                if reset {
                    w.str(141, "Y");
                }
                if let Some(u) = &user {
                    w.str(553, u);
                }
                if let Some(p) = &pass {
                    w.str(554, p);
                }
            });
            std::mem::swap(&mut buf, &mut st.out);
        }
        s.write_all(&buf)
            .await
            .map_err(|e| stream::io_reason(&e).to_string())?;
        buf.clear();
        loop {
            match s.read_some(&mut buf).await {
                Ok(0) => return Err(CLOSED.into()),
                Ok(_) => {}
                Err(e) => return Err(stream::io_reason(&e).into()),
            }
            loop {
                let f = match codec::decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(format!("protocol: {e}")),
                };
                match f.msg_type() {
                    b"A" => {
                        let seq = f.num(34).unwrap_or(1);
                        let mut st = conn.lock();
                        if seq > st.in_seq {
                            // The acceptor is ahead (no reset): ask for the gap; the
                            // session counts it.
                            let from = st.in_seq;
                            admin(&mut st, &sh.cfg, &conn.sender, "2", |w| {
                                w.num(7, from).num(16, 0);
                            });
                            sh.metrics.response("seq_gap");
                        }
                        st.in_seq = seq + 1;
                        st.up = st.link.is_none();
                        return Ok((s, buf));
                    }
                    b"5" => {
                        let text = f.text(58).map(|t| clean(&t)).unwrap_or_default();
                        return Err(if text.is_empty() {
                            "logout".into()
                        } else {
                            format!("logout: {text}")
                        });
                    }
                    b"3" => {
                        let text = f.text(58).map(|t| clean(&t)).unwrap_or_default();
                        return Err(format!("logon rejected: {text}"));
                    }
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(sh.cfg.connect_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

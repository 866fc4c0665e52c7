//! Permission violations, turned into errors that name the role a command needs. A NATS
//! server answers a publish or subscribe the user may not make with `-ERR Permissions
//! Violation` on the side; the call itself then just waits. So the connection's event
//! callback records the first violation, and the command is cut short with a clear error
//! instead of a timeout.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The first permission violation of this process's connection, if any.
#[derive(Debug, Clone, Default)]
pub struct Denials {
    first: Arc<Mutex<Option<String>>>,
    seen: Arc<Notify>,
}

impl Denials {
    /// `options` with an event callback that records permission violations.
    pub fn watch(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        let me = self.clone();
        options.event_callback(move |ev| {
            let me = me.clone();
            async move {
                if let async_nats::Event::ServerError(e) = ev {
                    let text = e.to_string();
                    if text.to_lowercase().contains("permissions violation") {
                        me.record(text);
                    }
                }
            }
        })
    }

    fn record(&self, text: String) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(text);
            self.seen.notify_waiters();
            self.seen.notify_one();
        }
    }

    /// Waits for the first violation and returns what the server said.
    pub async fn first(&self) -> String {
        loop {
            let notified = self.seen.notified();
            if let Some(t) = self.first.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return t;
            }
            notified.await;
        }
    }
}

/// What a command does and the role it needs, for the error.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// E.g. "deploy fleets".
    pub action: &'static str,
    /// "operator" or "viewer".
    pub role: &'static str,
}

/// The error for a command whose user may not do what it needs.
pub fn error(needs: Needs, server_said: &str) -> anyhow::Error {
    let credential = match needs.role {
        "viewer" => "a viewer or operator credential",
        _ => "an operator credential",
    };
    anyhow::anyhow!(
        "this NATS user may not {}: use {credential} (deploy/nats/roles.conf); the server said: {}",
        needs.action,
        server_said.trim()
    )
}

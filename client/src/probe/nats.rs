//! The probe on NATS: a plain subscription on the connection the other commands use.

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{now_us, Delivery, QUEUE};

/// Checks a subject to subscribe to; the error names `--subject`.
pub fn check_subject(subject: &str) -> Result<(), String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let bad = subject.is_empty()
        || subject.contains(char::is_whitespace)
        || tokens.iter().any(|t| t.is_empty())
        || tokens[..tokens.len() - 1].contains(&">");
    if bad {
        return Err(format!(
            "--subject '{subject}' is not a NATS subject to subscribe to: e.g. pluribus.telemetry.> or pluribus.telemetry.meters.*"
        ));
    }
    Ok(())
}

/// Subscribes to `subject` and forwards what arrives until `token` is cancelled; the
/// receiver ends if the connection closes.
pub async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
    token: CancellationToken,
) -> Result<mpsc::Receiver<Delivery>> {
    let mut sub = client
        .subscribe(subject.to_string())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    if let Err(e) = client.flush().await {
        bail!("cannot reach NATS to subscribe to {subject}: {e}");
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = token.cancelled() => break,
                m = sub.next() => m,
            };
            let Some(msg) = msg else { break };
            let d = Delivery {
                payload: msg.payload,
                recv_us: now_us(),
            };
            if tx.send(d).await.is_err() {
                break;
            }
        }
        let _ = sub.unsubscribe().await;
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked() {
        assert!(check_subject("pluribus.telemetry.>").is_ok());
        assert!(check_subject("a.*.b").is_ok());
        assert!(check_subject("a.>.b").unwrap_err().contains("--subject"));
        assert!(check_subject("a..b").is_err());
        assert!(check_subject("").is_err());
        assert!(check_subject("a b").is_err());
    }
}

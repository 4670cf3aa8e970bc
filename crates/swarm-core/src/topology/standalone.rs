//! Standalone mode: no cluster, the process is alone (0.5.1: `nodes` holds only the
//! local IPs).

use futures_util::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Discovery, DiscoveryUpdate, Member};

/// A [`Discovery`] that reports the local IPs once, as ready members, then idles.
#[derive(Clone, Debug)]
pub struct StandaloneDiscovery {
    local_ips: Vec<String>,
}

impl StandaloneDiscovery {
    /// A discovery whose only members are `local_ips`.
    pub fn new(local_ips: Vec<String>) -> Self {
        StandaloneDiscovery { local_ips }
    }
}

impl Discovery for StandaloneDiscovery {
    fn run(
        self: Box<Self>,
        out: UnboundedSender<DiscoveryUpdate>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let members = self.local_ips.into_iter().map(Member::from_ip).collect();
            if out.send(DiscoveryUpdate::Endpoints(members)).is_ok() {
                cancel.cancelled().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_the_local_ips_once_then_waits_for_cancellation() {
        let (out, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let discovery = Box::new(StandaloneDiscovery::new(vec!["10.1.0.2".into()]));
        let task = tokio::spawn(discovery.run(out, cancel.clone()));
        assert_eq!(
            rx.recv().await,
            Some(DiscoveryUpdate::Endpoints(vec![Member::from_ip(
                "10.1.0.2"
            )]))
        );
        assert!(!task.is_finished());
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }
}

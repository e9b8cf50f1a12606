//! How a worker is told to stop: a channel, or SIGTERM / SIGINT.

use tokio::sync::watch;
use tracing::info;

/// Tells a running worker to stop: finish in-flight work within the drain deadline,
/// commit what is done, exit.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A shutdown that a sender triggers (tests, the demo).
    pub fn channel() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self { rx })
    }

    /// A shutdown triggered by SIGTERM or SIGINT (Ctrl-C). The handlers are in place when
    /// this returns: call it first, so a signal during start-up also ends the worker
    /// cleanly instead of killing it.
    pub fn on_signals() -> Self {
        let (tx, me) = Self::channel();
        let signals = Signals::install();
        tokio::spawn(async move {
            signals.wait().await;
            info!("shutdown requested: draining in-flight messages");
            let _ = tx.send(true);
        });
        me
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    pub async fn wait(&mut self) {
        // An error means every sender is gone; nobody can ask us to stop any more.
        if self.rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM and SIGINT handlers, registered on creation.
#[cfg(unix)]
enum Signals {
    Unix(tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    CtrlC,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Signals::Unix(term, int),
            _ => Signals::CtrlC,
        }
    }

    async fn wait(self) {
        match self {
            Signals::Unix(mut term, mut int) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            Signals::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Signals
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

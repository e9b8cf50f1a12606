//! The progress display: a live table redrawn in place on a terminal, plain lines every
//! few seconds otherwise (logs, CI), or nothing.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use motcua_runtime::Shutdown;

use super::observe::{Observed, Step};
use super::Published;
use motcua_wiring::operations::{GroupLag, LagReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    Auto,
    Live,
    Plain,
    Off,
}

pub(crate) struct Progress {
    mode: Mode,
    stages: Vec<&'static str>,
    lines_drawn: usize,
    started: Instant,
    last: Option<(Instant, Vec<u64>)>,
}

/// The step whose count tells a stage's progress (its main output).
fn step_of(stage: &str) -> &'static [Step] {
    match stage {
        "intake" => &[Step::Accepted, Step::IntakeStopped],
        "verify" => &[Step::Verified, Step::VerifyStopped],
        "payment" => &[Step::Paid],
        "route" => &[Step::Routed],
        "backoffice" => &[Step::Decided],
        "result" => &[Step::Completed],
        _ => &[],
    }
}

impl Progress {
    pub(crate) fn new(mode: Mode, stages: Vec<&'static str>) -> Self {
        let mode = match mode {
            Mode::Auto if std::io::stdout().is_terminal() => Mode::Live,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        Self {
            mode,
            stages,
            lines_drawn: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn every(&self) -> Duration {
        match self.mode {
            Mode::Live => Duration::from_millis(500),
            _ => Duration::from_secs(5),
        }
    }

    fn draw(&mut self, o: &Observed, p: &Published, lag: &[(&'static str, GroupLag)]) {
        let now = Instant::now();
        // Per stage: dossiers done (track: events committed).
        let done: Vec<u64> = self
            .stages
            .iter()
            .map(|s| match step_of(s) {
                [] => lag
                    .iter()
                    .find(|(n, _)| n == s)
                    .map_or(0, |(_, g)| g.committed.max(0) as u64),
                steps => steps.iter().map(|st| o.step(*st)).sum(),
            })
            .collect();
        let rates: Vec<f64> = match &self.last {
            Some((t, before)) => {
                let secs = (now - *t).as_secs_f64().max(1e-3);
                done.iter()
                    .zip(before)
                    .map(|(d, b)| d.saturating_sub(*b) as f64 / secs)
                    .collect()
            }
            None => vec![0.0; done.len()],
        };
        let lag_of = |s: &str| lag.iter().find(|(n, _)| *n == s).map(|(_, g)| g.lag);
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Live => {
                let mut out = String::new();
                if self.lines_drawn > 0 {
                    // Back to the top of the previous table, and clear below.
                    out.push_str(&format!("\x1b[{}A\x1b[J", self.lines_drawn));
                }
                out.push_str(&format!(
                    "  {:>6.1} s  published {}  ended {}  dead-lettered {}\n",
                    elapsed,
                    p.total,
                    o.ended(),
                    o.dead_lettered()
                ));
                out.push_str(&format!("  {:<11}{:>9}{:>9}{:>9}\n", "stage", "done", "per s", "lag"));
                for ((s, d), r) in self.stages.iter().zip(&done).zip(&rates) {
                    let unit = if step_of(s).is_empty() { " ev" } else { "" };
                    out.push_str(&format!(
                        "  {:<11}{:>9}{:>9.0}{:>9}{unit}\n",
                        s,
                        d,
                        r,
                        lag_of(s).map_or("?".to_owned(), |l| l.to_string())
                    ));
                }
                self.lines_drawn = out.lines().count();
                print!("{out}");
            }
            Mode::Plain => {
                let stages: Vec<String> = self
                    .stages
                    .iter()
                    .zip(&done)
                    .map(|(s, d)| format!("{s} {d} (lag {})", lag_of(s).map_or("?".to_owned(), |l| l.to_string())))
                    .collect();
                println!(
                    "  [{:>5.0} s] published {}, ended {}, dead-lettered {} | {}",
                    elapsed,
                    p.total,
                    o.ended(),
                    o.dead_lettered(),
                    stages.join(", ")
                );
            }
            Mode::Auto | Mode::Off => {}
        }
        let _ = std::io::stdout().flush();
        self.last = Some((now, done));
    }
}

/// Redraws until `shutdown`, then once more with the final figures. (With the display
/// off it still folds finished dossiers, so a soak's memory stays bounded.)
pub(crate) async fn run(
    mut progress: Progress,
    observed: Arc<Mutex<Observed>>,
    published: Arc<Mutex<Published>>,
    lag: Arc<LagReader>,
    mut shutdown: Shutdown,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.wait() => true,
            _ = tokio::time::sleep(progress.every()) => false,
        };
        if progress.mode != Mode::Off {
            let l = lag.clone();
            let lag_now = tokio::task::spawn_blocking(move || l.read()).await.unwrap_or_default();
            let o = observed.lock().expect("observer state");
            let p = *published.lock().expect("published");
            progress.draw(&o, &p, &lag_now);
        }
        // Latencies of dossiers long finished are folded now, so a soak's memory stays
        // bounded.
        observed
            .lock()
            .expect("observer state")
            .settle(Some(Duration::from_secs(60)));
        if stopping {
            return;
        }
    }
}

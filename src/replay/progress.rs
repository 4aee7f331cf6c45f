//! The progress bar `weir replay` draws on stderr while it reads a capture: bytes of the file
//! read, frames per second so far (wall clock, file I/O included), redrawn at most ten times a
//! second and erased at the end, so what stays on the terminal is the report alone.
//!
//! The caller draws it only when stderr is a terminal; a pipe or a file gets nothing from here.

use super::Progress;
use std::io::Write;
use std::time::{Duration, Instant};

/// Cells of the bar itself.
const WIDTH: usize = 30;
const REDRAW: Duration = Duration::from_millis(100);

pub struct ProgressBar<W: Write> {
    out: W,
    started: Instant,
    drawn: Option<Instant>,
}

impl ProgressBar<std::io::Stderr> {
    pub fn stderr() -> Self {
        ProgressBar::new(std::io::stderr())
    }
}

impl<W: Write> ProgressBar<W> {
    pub fn new(out: W) -> Self {
        ProgressBar {
            out,
            started: Instant::now(),
            drawn: None,
        }
    }

    /// Redraws, unless it was drawn less than 100 ms ago and the file is not read to its end.
    pub fn update(&mut self, p: &Progress) {
        let now = Instant::now();
        let done = p.bytes_read >= p.total_bytes;
        if !done && self.drawn.is_some_and(|d| now.duration_since(d) < REDRAW) {
            return;
        }
        self.drawn = Some(now);
        let line = render(p, now.duration_since(self.started));
        // A terminal that went away is no reason to stop the replay.
        let _ = write!(self.out, "\r{line}\x1b[K");
        let _ = self.out.flush();
    }

    /// Erases the bar.
    pub fn finish(mut self) {
        if self.drawn.is_some() {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `replay [###########-------------------]  37%  1.2/3.4 MiB  12345 frames  98765 frames/s`
pub fn render(p: &Progress, elapsed: Duration) -> String {
    let fraction = if p.total_bytes == 0 {
        1.0
    } else {
        (p.bytes_read as f64 / p.total_bytes as f64).min(1.0)
    };
    let filled = (fraction * WIDTH as f64).round() as usize;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        p.frames as f64 / secs
    } else {
        0.0
    };
    format!(
        "replay [{}{}] {:3.0}%  {:.1}/{:.1} MiB  {} frames  {:.0} frames/s",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        fraction * 100.0,
        mib(p.bytes_read),
        mib(p.total_bytes),
        p.frames,
        rate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_bytes_and_rate() {
        let p = Progress {
            bytes_read: 3 * 1024 * 1024,
            total_bytes: 12 * 1024 * 1024,
            frames: 5000,
        };
        assert_eq!(
            render(&p, Duration::from_secs(2)),
            "replay [########----------------------]  25%  3.0/12.0 MiB  5000 frames  2500 frames/s"
        );
    }

    #[test]
    fn redraws_are_throttled_and_the_bar_is_erased() {
        let mut out = Vec::new();
        let mut bar = ProgressBar::new(&mut out);
        let mut p = Progress {
            bytes_read: 10,
            total_bytes: 100,
            frames: 1,
        };
        bar.update(&p);
        p.bytes_read = 20;
        bar.update(&p); // within 100 ms: skipped
        p.bytes_read = 100;
        bar.update(&p); // the end is always drawn
        bar.finish();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\r').count(), 3, "{text:?}");
        assert!(text.contains(" 10%") && !text.contains(" 20%") && text.contains("100%"));
        assert!(text.ends_with("\r\x1b[2K"));
    }
}

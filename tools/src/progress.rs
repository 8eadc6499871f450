//! Progress on stderr: the build's callbacks as a bar, counting bars for
//! other long steps, and spinners for steps that report no progress.

use indicatif::{ProgressBar, ProgressStyle};
use strata::{BuildProgress, BuildStage};

/// A progress bar driven by [`strata::IndexBuilder::build_with_progress`].
pub struct BuildBar {
    bar: ProgressBar,
}

impl BuildBar {
    /// A bar for `total` insertions; hidden when `quiet`.
    pub fn new(total: usize, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message("inserting");
        BuildBar { bar }
    }

    /// Callback for the builder.
    pub fn update(&self, p: BuildProgress) {
        match p.stage {
            BuildStage::Insert => self.bar.set_position(p.done as u64),
            BuildStage::Refine => {
                self.bar.set_message("refining");
                self.bar.set_position(p.done as u64)
            }
            BuildStage::Quantize => self.bar.set_message("quantizing"),
            BuildStage::Assemble => self.bar.set_message("writing"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A bar counting `total` items of a step (queries, rows) labelled `what`;
/// hidden when `quiet`. Like the build bar it draws on stderr, and only
/// when stderr is a terminal.
pub fn count_bar(total: u64, what: &'static str, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

/// A spinner with the elapsed time for a step that reports no progress of
/// its own (a compaction, one atomic batch); hidden when `quiet`.
pub fn spinner(what: impl Into<std::borrow::Cow<'static, str>>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"),
    );
    bar.set_message(what);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

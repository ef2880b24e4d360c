//! The training log model: what `deploy`'s follow step, `watch`, `logs --follow` and `status`
//! read from a launcher's log streamed from the cluster (outside bytes: the scripts' output,
//! progress bars, tracebacks, whatever a rank prints). Each line goes through the watch (its
//! verdicts: stop, hang, warn), then the analysis, the diagnosis and the live figures with
//! their cost estimate. Nothing may panic, however the numbers in the log are garbled.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use xtask::observe::decide::{self, Policy};
use xtask::observe::live;
use xtask::observe::watch::Watch;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let start = Instant::now();
    let mut watch = Watch::new(Policy::default(), start);
    let mut now = start;
    for raw in text.lines() {
        now += Duration::from_secs(7);
        let _ = watch.line(raw, now);
    }
    // A day without a line: whatever the log said of its step time, the hang bound holds.
    let _ = watch.tick(now + Duration::from_secs(86_400));
    let analyzer = watch.analyzer();
    let analysis = analyzer.analysis();
    let _ = decide::diagnosis(analyzer);
    let _ = decide::hang_bound(analysis.seconds_per_step, None);
    let figures = live::live(&analysis, watch.elapsed(now), 4, 21.50);
    let line = live::summary(&figures);
    assert!(!line.contains('\n'), "the summary is one line: {line:?}");
});

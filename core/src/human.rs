//! Durations as operators read them in the journal, webhooks and the commands' output.

use std::time::Duration;

/// A duration as operators read it: `35µs`, `1.2ms`, `4s`.
pub fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.1}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_nanos(35_400)), "35µs");
        assert_eq!(human(Duration::from_micros(1_250)), "1.2ms");
        assert_eq!(human(Duration::from_millis(4_000)), "4.0s");
    }
}

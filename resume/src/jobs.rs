//! What the in-memory job tables (on-demand transcodes, remote fetches)
//! share: job ids, and forgetting the oldest finished jobs.

use std::collections::HashMap;

/// Finished jobs kept for polling; older ones are forgotten first.
pub(crate) const KEEP_FINISHED: usize = 1000;

/// A new job id: 16 hex digits, random.
pub(crate) fn new_job_id() -> String {
    sharecast_tokens::random_hex(8)
}

/// Makes room for one more job: when the table holds [`KEEP_FINISHED`] or
/// more, forgets the oldest finished ones (`finished_at` is `None` for a job
/// still under way, which is never forgotten).
pub(crate) fn make_room<J>(jobs: &mut HashMap<String, J>, finished_at: impl Fn(&J) -> Option<i64>) {
    if jobs.len() < KEEP_FINISHED {
        return;
    }
    let mut finished: Vec<(i64, String)> = jobs
        .iter()
        .filter_map(|(id, j)| finished_at(j).map(|t| (t, id.clone())))
        .collect();
    finished.sort();
    for (_, id) in finished.iter().take(jobs.len() + 1 - KEEP_FINISHED) {
        jobs.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_finished_jobs_go_first_and_running_ones_stay() {
        let mut jobs: HashMap<String, Option<i64>> = HashMap::new();
        jobs.insert("running".into(), None);
        for i in 0..KEEP_FINISHED as i64 - 1 {
            jobs.insert(format!("done{i}"), Some(1000 - i));
        }
        make_room(&mut jobs, |j| *j);
        assert_eq!(jobs.len(), KEEP_FINISHED - 1);
        assert!(jobs.contains_key("running"));
        // The one finished first (the largest i) is gone.
        assert!(!jobs.contains_key(&format!("done{}", KEEP_FINISHED - 2)));
        let id = new_job_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

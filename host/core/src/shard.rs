//! Sharded inference: process `i` of `n` segments a deterministic 1/n of the subjects, so
//! the tasks of a Slurm job array split a large cohort between them. The subjects are
//! sorted by id and dealt round robin (position `% n == i`), which spreads large and
//! small subjects evenly; every shard writes only its own subjects' files.

use crate::config::ConfigError;
pub use crate::config::Shard;

/// The Slurm job-array variables a shard is read from, in the order they are consulted.
pub const SLURM_VARIABLES: [&str; 4] =
    ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"];

impl Shard {
    /// The shard of a Slurm job-array task, from `lookup` (the environment): index
    /// `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` (MIN is 0 when unset), count
    /// `SLURM_ARRAY_TASK_COUNT`, else `SLURM_ARRAY_TASK_MAX - SLURM_ARRAY_TASK_MIN + 1`.
    /// `None` outside a job array (no `SLURM_ARRAY_TASK_ID`). The array must be one
    /// contiguous range (`--array=0-9`, `--array=1-10%4`), so that every index has a task.
    ///
    /// # Errors
    /// A variable that is not a number, no way to know the count, or an array with gaps
    /// or a step (its tasks would leave subjects out), naming the variables.
    pub fn from_slurm(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ConfigError> {
        let number = |name: &str| -> Result<Option<usize>, ConfigError> {
            let Some(text) = lookup(name) else { return Ok(None) };
            let text = text.trim().to_owned();
            text.parse::<usize>().map(Some).map_err(|_| {
                ConfigError::Invalid(format!("environment variable {name} must be a whole number, got \"{text}\""))
            })
        };
        let Some(id) = number("SLURM_ARRAY_TASK_ID")? else { return Ok(None) };
        let (task_count, min, max) =
            (number("SLURM_ARRAY_TASK_COUNT")?, number("SLURM_ARRAY_TASK_MIN")?, number("SLURM_ARRAY_TASK_MAX")?);
        let min = min.unwrap_or(0);
        let span = max.map(|max| max.checked_sub(min).map(|d| d + 1));
        let count = match (task_count, span) {
            (_, Some(None)) => {
                return Err(ConfigError::Invalid(format!(
                    "SLURM_ARRAY_TASK_MAX = {} is below SLURM_ARRAY_TASK_MIN = {min}",
                    max.unwrap_or_default()
                )))
            }
            (Some(c), Some(Some(s))) if c != s => {
                return Err(ConfigError::Invalid(format!(
                    "the job array is not one contiguous range (SLURM_ARRAY_TASK_COUNT = {c}, but MIN..MAX = \
                     {min}..{} spans {s}): sharded inference needs `--array=0-{}`, or give `--shard i/n` yourself",
                    max.unwrap_or_default(),
                    c.saturating_sub(1)
                )))
            }
            (Some(c), _) => c,
            (None, Some(Some(s))) => s,
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX: \
                     the number of shards is unknown; give `--shard i/n`"
                        .into(),
                ))
            }
        };
        let index = id.checked_sub(min);
        index.and_then(|i| Shard::new(i, count)).map(Some).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "SLURM_ARRAY_TASK_ID = {id} is not in the job array's range {min}..{} ({count} tasks): \
                 sharded inference needs a contiguous array such as `--array=0-{}`, or `--shard i/n`",
                min + count.saturating_sub(1),
                count.saturating_sub(1)
            ))
        })
    }

    /// Whether this shard takes every subject.
    pub fn is_all(&self) -> bool {
        self.count == 1
    }

    /// This shard's items: sorted by `id`, those at positions `p` with `p % count == index`.
    pub fn select<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
        items.sort_by(|a, b| id(a).cmp(id(b)));
        items.into_iter().enumerate().filter(|(p, _)| p % self.count == self.index).map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm(vars: &[(&str, &str)]) -> Result<Option<Shard>, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Shard::from_slurm(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn deals_sorted_ids_round_robin_into_disjoint_shards_that_cover_all() {
        let ids = vec!["e", "b", "a", "d", "c"];
        let shards: Vec<Vec<&str>> = (0..2).map(|i| Shard::new(i, 2).unwrap().select(ids.clone(), |s| s)).collect();
        assert_eq!(shards, [vec!["a", "c", "e"], vec!["b", "d"]]);
        assert_eq!(Shard::ALL.select(ids.clone(), |s| s), ["a", "b", "c", "d", "e"]);
        assert!(Shard::new(6, 7).unwrap().select(ids, |s| s).is_empty(), "more shards than subjects");
    }

    #[test]
    fn reads_the_shard_of_a_slurm_array_task() {
        assert_eq!(slurm(&[]).unwrap(), None);
        let s = |index, count| Some(Shard { index, count });
        assert_eq!(slurm(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "10")]).unwrap(), s(3, 10));
        // --array=1-10: ids from 1.
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "10"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "10"),
        ];
        assert_eq!(slurm(&one_based).unwrap(), s(9, 10));
        // Without COUNT (older Slurm): MAX - MIN + 1.
        let no_count = [("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_MAX", "7")];
        assert_eq!(slurm(&no_count).unwrap(), s(1, 4));
    }

    #[test]
    fn rejects_slurm_arrays_that_would_leave_subjects_out() {
        let err = |vars: &[(&str, &str)]| slurm(vars).unwrap_err().to_string();
        let e = err(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")]);
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("\"x\""), "{e}");
        let e = err(&[("SLURM_ARRAY_TASK_ID", "0")]);
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT") && e.contains("--shard"), "{e}");
        // --array=0-8:2 has 5 tasks over 0..8.
        let step = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "5"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
        ];
        let e = err(&step);
        assert!(e.contains("contiguous") && e.contains("--array=0-4"), "{e}");
        let e = err(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert!(e.contains("SLURM_ARRAY_TASK_ID = 4") && e.contains("--array=0-3"), "{e}");
    }
}

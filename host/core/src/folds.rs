//! k-fold cross-validation as the configuration sees it: which folds a `--folds`
//! argument names, a fold's settings (its own `<model_dir>/fold_<k>`), and the outputs of
//! an ensemble of folds under `<model_dir>/folds_<i>_<j>…`. Training the folds and taking
//! their checkpoints is the engine's (`niftyhost::engine::folds`).
//!
//! The split file and the learned preprocessing stay in `<model_dir>`, shared by every
//! fold (see [`Settings::run_dir`]), so the folds' models take the same inputs.

use std::path::PathBuf;

use crate::config::{ConfigError, Settings};

/// The folds a `--folds` argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldSelection {
    /// Every fold, `0..training.k_folds`.
    All,
    /// These folds.
    List(Vec<usize>),
}

impl FoldSelection {
    /// Parses `all` or fold numbers separated by commas (`0,2,4`).
    ///
    /// # Errors
    /// Anything else, saying what was expected.
    pub fn parse(text: &str) -> Result<FoldSelection, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(FoldSelection::All);
        }
        text.split(',')
            .map(|f| f.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map(FoldSelection::List)
            .map_err(|_| format!("expected `all` or fold numbers separated by commas (`0,2,4`), got `{text}`"))
    }

    /// The folds of `settings` this selection names, sorted, each once.
    ///
    /// # Errors
    /// `training.k_folds` below 2, or a fold outside `0..k_folds`.
    pub fn resolve(&self, settings: &Settings) -> Result<Vec<usize>, ConfigError> {
        require_folds(settings, "--folds")?;
        let k = settings.training.k_folds;
        let mut folds = match self {
            FoldSelection::All => (0..k).collect(),
            FoldSelection::List(folds) => folds.clone(),
        };
        folds.sort_unstable();
        folds.dedup();
        if let Some(bad) = folds.iter().find(|&&f| f >= k) {
            return Err(ConfigError::Invalid(format!(
                "`--folds` names fold {bad}, but `training.k_folds` = {k} has folds 0..={}",
                k - 1
            )));
        }
        Ok(folds)
    }
}

/// Refuses `flag` unless k-fold cross-validation is on (`training.k_folds` >= 2).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the flag and the keys.
pub fn require_folds(settings: &Settings, flag: &str) -> Result<(), ConfigError> {
    let k = settings.training.k_folds;
    if k < 2 {
        return Err(ConfigError::Invalid(format!(
            "`{flag}` needs k-fold cross-validation: `training.k_folds` must be 2 or more, got {k} (`training.fold` is the fold)"
        )));
    }
    Ok(())
}

/// `settings` for fold `k` (`training.fold = k`).
pub fn for_fold(settings: &Settings, k: usize) -> Settings {
    let mut s = settings.clone();
    s.training.fold = k;
    s
}

/// The folder of the ensemble of `folds`: `<model_dir>/folds_<i>_<j>…`.
pub fn ensemble_dir(settings: &Settings, folds: &[usize]) -> PathBuf {
    let names: Vec<String> = folds.iter().map(ToString::to_string).collect();
    settings.system.model_dir.join(format!("folds_{}", names.join("_")))
}

/// `settings` whose default outputs (`inference.output_dir`, `evaluation.output_csv`,
/// and so `evaluation.seg_dir`) are those of the ensemble of `folds`, under
/// [`ensemble_dir`]; outputs the config sets are kept.
pub fn with_ensemble_outputs(mut settings: Settings, folds: &[usize]) -> Settings {
    let dir = ensemble_dir(&settings, folds);
    if settings.inference.output_dir.as_os_str().is_empty() {
        settings.inference.output_dir = dir.join("inference");
    }
    if settings.evaluation.output_csv.as_os_str().is_empty() {
        settings.evaluation.output_csv = dir.join("evaluation").join("metrics.csv");
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(k_folds: usize) -> Settings {
        let set = |key: &str| (format!("--set {key}"), key.to_owned(), "\"d\"".to_owned());
        let sections = vec![set("input.image.path_to_search"), set("input.label.path_to_search")];
        let mut s = crate::config::load(None, &crate::config::Overrides { cli: sections, env: Vec::new() }).unwrap();
        s.training.k_folds = k_folds;
        s.system.model_dir = PathBuf::from("m");
        s
    }

    #[test]
    fn fold_lists_parse_resolve_sorted_once_and_refuse_folds_out_of_range() {
        assert_eq!(FoldSelection::parse(" ALL "), Ok(FoldSelection::All));
        assert_eq!(FoldSelection::parse("4, 0,2"), Ok(FoldSelection::List(vec![4, 0, 2])));
        for bad in ["", "1,,2", "-1", "one"] {
            assert!(FoldSelection::parse(bad).unwrap_err().contains("`all`"), "{bad}");
        }
        let s = settings(5);
        assert_eq!(FoldSelection::All.resolve(&s).unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(FoldSelection::List(vec![4, 0, 4]).resolve(&s).unwrap(), [0, 4]);
        let err = FoldSelection::List(vec![5]).resolve(&s).unwrap_err().to_string();
        assert!(err.contains("fold 5") && err.contains("`training.k_folds` = 5"), "{err}");
        let err = FoldSelection::All.resolve(&settings(0)).unwrap_err().to_string();
        assert!(err.contains("`--folds`") && err.contains("`training.k_folds`"), "{err}");
    }

    #[test]
    fn folds_run_in_their_own_folders_and_share_the_split_and_preprocessing() {
        let s = for_fold(&settings(3), 2);
        assert_eq!(s.run_dir(), PathBuf::from("m/fold_2"));
        assert_eq!(s.checkpoint_dir(), PathBuf::from("m/fold_2/checkpoints"));
        assert_eq!(s.inference_dir(), PathBuf::from("m/fold_2/inference"));
        assert_eq!(s.evaluation_csv(), PathBuf::from("m/fold_2/evaluation/metrics.csv"));
        assert_eq!(s.split_file(), PathBuf::from("m/dataset_split.csv"));
        assert_eq!(s.histogram_file(), PathBuf::from("m/histogram.json"));
        assert_eq!(s.label_map_file(), PathBuf::from("m/label_map.json"));
        assert_eq!(settings(0).checkpoint_dir(), PathBuf::from("m/checkpoints"));
        let e = with_ensemble_outputs(s, &[0, 2]);
        assert_eq!(e.inference_dir(), PathBuf::from("m/folds_0_2/inference"));
        assert_eq!(e.evaluation_csv(), PathBuf::from("m/folds_0_2/evaluation/metrics.csv"));
    }
}

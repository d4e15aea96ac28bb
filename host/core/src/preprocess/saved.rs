//! Learned models saved as JSON with a format name and version (histogram landmarks,
//! label maps): one way to write, read and check them.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::PreprocessError;

/// A learned model stored as a JSON object with `format` and `version` fields.
pub trait SavedModel: Serialize + DeserializeOwned {
    /// What it is, for messages.
    const WHAT: &'static str;
    /// The value of its `format` field.
    const FORMAT: &'static str;
    /// The value of its `version` field.
    const VERSION: u32;

    /// Checks the content after reading.
    ///
    /// # Errors
    /// [`PreprocessError::InvalidModel`] naming what is wrong.
    fn validate(&self) -> Result<(), PreprocessError>;

    /// The model as pretty-printed JSON.
    ///
    /// # Errors
    /// [`PreprocessError::Json`] (not expected for a valid model).
    fn to_json(&self) -> Result<String, PreprocessError> {
        serde_json::to_string_pretty(self).map_err(|source| PreprocessError::Json { what: Self::WHAT, source })
    }

    /// Reads a model from JSON, checking the format name and version first, then the
    /// content.
    ///
    /// # Errors
    /// [`PreprocessError::Json`], [`PreprocessError::UnsupportedFormat`],
    /// [`PreprocessError::InvalidModel`].
    fn from_json(text: &str) -> Result<Self, PreprocessError> {
        let json = |source| PreprocessError::Json { what: Self::WHAT, source };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        let format = value.get("format").and_then(|v| v.as_str());
        let version = value.get("version").and_then(|v| v.as_u64());
        if format != Some(Self::FORMAT) || version != Some(u64::from(Self::VERSION)) {
            let field = |name: &str| value.get(name).map_or("(missing)".to_string(), |v| v.to_string());
            return Err(PreprocessError::UnsupportedFormat {
                what: Self::WHAT,
                expected_format: Self::FORMAT,
                expected_version: Self::VERSION,
                got: format!("format {} version {}", field("format"), field("version")),
            });
        }
        let model: Self = serde_json::from_value(value).map_err(json)?;
        model.validate()?;
        Ok(model)
    }

    /// Writes the model as JSON to `path`.
    ///
    /// # Errors
    /// [`PreprocessError::Io`] naming the path.
    fn save(&self, path: impl AsRef<Path>) -> Result<(), PreprocessError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()?).map_err(|source| PreprocessError::Io { path: path.to_path_buf(), source })
    }

    /// Reads a model written by [`SavedModel::save`].
    ///
    /// # Errors
    /// [`PreprocessError::Io`] naming the path; as [`SavedModel::from_json`].
    fn load(path: impl AsRef<Path>) -> Result<Self, PreprocessError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| PreprocessError::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text)
    }
}

//! Hyper-parameters: a component declares them, the SDK validates the JSON the host sends.

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::RStr;
use serde_json::{Map, Value};

use super::nearest;
use crate::{ParamSpec, ParamSpec_Ref, PluginError};

/// The type of a hyper-parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A signed integer.
    Int,
    /// A number.
    Float,
    /// `true` / `false`.
    Bool,
    /// A string.
    String,
    /// A list of integers.
    IntList,
    /// A list of numbers.
    FloatList,
    /// A list of strings.
    StringList,
    /// A list of lists of integers (e.g. one `[d, h, w]` per network level), since 1.2.
    IntListList,
}

impl ParamType {
    /// The name used in schemas and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::IntList => "int_list",
            ParamType::FloatList => "float_list",
            ParamType::StringList => "string_list",
            ParamType::IntListList => "int_list_list",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        let all = |f: fn(&Value) -> bool| value.as_array().is_some_and(|a| a.iter().all(f));
        fn int(v: &Value) -> bool {
            v.is_i64() || v.is_u64()
        }
        match self {
            ParamType::Int => value.is_i64() || value.is_u64(),
            ParamType::Float => value.is_number(),
            ParamType::Bool => value.is_boolean(),
            ParamType::String => value.is_string(),
            ParamType::IntList => all(int),
            ParamType::FloatList => all(Value::is_number),
            ParamType::StringList => all(Value::is_string),
            ParamType::IntListList => all(|row| row.as_array().is_some_and(|r| r.iter().all(int))),
        }
    }
}

/// The declaration of one hyper-parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its key.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Its default as a JSON literal (`"8"`, `"\"instance\""`, `"[1, 2]"`).
    pub default: &'static str,
    /// One line saying what it does.
    pub doc: &'static str,
}

impl Param {
    /// The FFI-safe form sent to the host (leaked: a plugin describes itself once).
    pub fn spec(&self) -> ParamSpec_Ref {
        ParamSpec {
            name: RStr::from_str(self.name),
            ty: RStr::from_str(self.ty.as_str()),
            default_json: RStr::from_str(self.default),
            doc: RStr::from_str(self.doc),
        }
        .leak_into_prefix()
    }
}

/// Validated hyper-parameters: every declared key present (defaults filled in).
#[derive(Debug, Clone)]
pub struct Params {
    component: String,
    values: Map<String, Value>,
}

impl Params {
    /// Parses `json` (an object) against `declared`; `extra` names keys accepted without
    /// a declaration (e.g. [`crate::HOST_NETWORK_KEYS`]).
    ///
    /// # Errors
    /// Invalid JSON, an unknown key (with the nearest declared key), or a value of the
    /// wrong type, each naming the component and the key.
    pub fn parse(component: &str, json: &str, declared: &[Param], extra: &[&str]) -> Result<Params, PluginError> {
        let given: Value = if json.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(json)
                .map_err(|e| PluginError::new(format!("{component}: parameters are not valid JSON: {e}")))?
        };
        let Value::Object(given) = given else {
            return Err(PluginError::new(format!("{component}: parameters must be a table, got {given}")));
        };
        let mut values = Map::new();
        for p in declared {
            let default: Value = serde_json::from_str(p.default)
                .map_err(|e| PluginError::new(format!("{component}: default of `{}` is not JSON: {e}", p.name)))?;
            values.insert(p.name.to_owned(), default);
        }
        for (key, value) in given {
            match declared.iter().find(|p| p.name == key) {
                Some(p) if !p.ty.accepts(&value) => {
                    return Err(PluginError::new(format!(
                        "{component}: parameter `{key}` must be {}, got {value}",
                        p.ty.as_str()
                    )))
                }
                Some(_) => {}
                None if extra.contains(&key.as_str()) => {}
                None => {
                    let names = declared.iter().map(|p| p.name).chain(extra.iter().copied());
                    let hint = nearest(&key, names).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
                    return Err(PluginError::new(format!("{component}: unknown parameter `{key}`{hint}")));
                }
            }
            values.insert(key, value);
        }
        Ok(Params { component: component.to_owned(), values })
    }

    fn get(&self, key: &str) -> Result<&Value, PluginError> {
        self.values.get(key).ok_or_else(|| PluginError::new(format!("{}: missing parameter `{key}`", self.component)))
    }

    fn typed<T>(&self, key: &str, what: &str, f: impl Fn(&Value) -> Option<T>) -> Result<T, PluginError> {
        let value = self.get(key)?;
        f(value).ok_or_else(|| {
            PluginError::new(format!("{}: parameter `{key}` must be {what}, got {value}", self.component))
        })
    }

    /// An integer parameter.
    pub fn int(&self, key: &str) -> Result<i64, PluginError> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// A positive integer parameter.
    pub fn positive(&self, key: &str) -> Result<i64, PluginError> {
        self.typed(key, "a positive integer", |v| v.as_i64().filter(|&i| i > 0))
    }

    /// A number parameter.
    pub fn float(&self, key: &str) -> Result<f64, PluginError> {
        self.typed(key, "a number", Value::as_f64)
    }

    /// A boolean parameter.
    pub fn bool(&self, key: &str) -> Result<bool, PluginError> {
        self.typed(key, "true or false", Value::as_bool)
    }

    /// A string parameter.
    pub fn string(&self, key: &str) -> Result<String, PluginError> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// A string parameter that must be one of `choices`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<String, PluginError> {
        let s = self.string(key)?;
        if choices.contains(&s.as_str()) {
            Ok(s)
        } else {
            Err(PluginError::new(format!(
                "{}: parameter `{key}` must be one of {choices:?}, got \"{s}\"",
                self.component
            )))
        }
    }

    /// A list-of-integer-lists parameter (`int_list_list`).
    pub fn int_lists(&self, key: &str) -> Result<Vec<Vec<i64>>, PluginError> {
        self.typed(key, "a list of integer lists", |v| {
            v.as_array()?.iter().map(|row| row.as_array()?.iter().map(Value::as_i64).collect()).collect()
        })
    }

    /// A list-of-numbers parameter.
    pub fn floats(&self, key: &str) -> Result<Vec<f64>, PluginError> {
        self.typed(key, "a list of numbers", |v| v.as_array()?.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[Param] = &[
        Param { name: "base_channels", ty: ParamType::Int, default: "8", doc: "" },
        Param { name: "norm", ty: ParamType::String, default: "\"instance\"", doc: "" },
    ];

    #[test]
    fn fills_defaults_and_keeps_given_values() {
        let p = Params::parse("net", r#"{"norm": "batch"}"#, DECLARED, &[]).unwrap();
        assert_eq!(p.int("base_channels").unwrap(), 8);
        assert_eq!(p.string("norm").unwrap(), "batch");
    }

    #[test]
    fn unknown_key_names_the_nearest_declared_key() {
        let err = Params::parse("net", r#"{"base_chanels": 4}"#, DECLARED, &[]).unwrap_err();
        assert_eq!(err.message.as_str(), "net: unknown parameter `base_chanels`; did you mean `base_channels`?");
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let err = Params::parse("net", r#"{"base_channels": "8"}"#, DECLARED, &[]).unwrap_err();
        assert!(err.message.contains("`base_channels` must be int, got \"8\""), "{}", err.message);
    }

    #[test]
    fn int_list_list_takes_nested_integer_lists_only() {
        const NESTED: &[Param] =
            &[Param { name: "strides", ty: ParamType::IntListList, default: "[[1, 1, 1]]", doc: "" }];
        let p = Params::parse("net", r#"{"strides": [[1, 1, 1], [1, 2, 2]]}"#, NESTED, &[]).unwrap();
        assert_eq!(p.int_lists("strides").unwrap(), vec![vec![1, 1, 1], vec![1, 2, 2]]);
        let p = Params::parse("net", "{}", NESTED, &[]).unwrap();
        assert_eq!(p.int_lists("strides").unwrap(), vec![vec![1, 1, 1]]);
        for bad in [r#"[1, 2]"#, r#"[[1, 2.5]]"#, r#"[[1], "2"]"#, r#"3"#] {
            let err = Params::parse("net", &format!(r#"{{"strides": {bad}}}"#), NESTED, &[]).unwrap_err();
            assert!(err.message.contains("`strides` must be int_list_list, got"), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn extra_keys_are_accepted() {
        let p = Params::parse("net", r#"{"num_classes": 3}"#, DECLARED, &["num_classes"]).unwrap();
        assert_eq!(p.int("num_classes").unwrap(), 3);
    }
}

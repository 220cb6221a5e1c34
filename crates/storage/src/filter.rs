//! Metadata filters: checked once when a search arrives, then evaluated per candidate inside
//! both retrievers (never as a post-filter on a fixed candidate list).

use serde::{Deserialize, Serialize};

use crate::document::{Metadata, Value};

/// A metadata filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// `metadata[key] == value` (string, int or bool).
    Equals {
        /// Metadata key.
        key: String,
        /// Value to match.
        value: Value,
    },
    /// `gte <= metadata[key] <= lte` on ints and floats.
    Range {
        /// Metadata key.
        key: String,
        /// Inclusive lower bound.
        gte: Option<f64>,
        /// Inclusive upper bound.
        lte: Option<f64>,
    },
    /// `metadata[key]` equals one of `values`.
    AnyOf {
        /// Metadata key.
        key: String,
        /// Accepted values.
        values: Vec<Value>,
    },
    /// All clauses hold.
    And(Vec<Filter>),
}

impl Filter {
    /// Whether a document with this metadata passes.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        match self {
            Filter::Equals { key, value } => {
                metadata.get(key).is_some_and(|v| v.loosely_equals(value))
            }
            Filter::Range { key, gte, lte } => {
                metadata.get(key).and_then(Value::as_number).is_some_and(|x| {
                    gte.is_none_or(|low| x >= low) && lte.is_none_or(|high| x <= high)
                })
            }
            Filter::AnyOf { key, values } => {
                metadata.get(key).is_some_and(|v| values.iter().any(|w| v.loosely_equals(w)))
            }
            Filter::And(clauses) => clauses.iter().all(|c| c.matches(metadata)),
        }
    }

    /// Checks the filter's shape; the error names the offending clause as a path from `filter`.
    pub fn check(&self, max_depth: usize) -> Result<(), String> {
        self.check_at("filter", 1, max_depth)
    }

    fn check_at(&self, path: &str, depth: usize, max_depth: usize) -> Result<(), String> {
        if depth > max_depth {
            return Err(format!("{path}: filter nesting exceeds the limit of {max_depth} levels"));
        }
        let check_key = |key: &str, path: &str| {
            if key.is_empty() { Err(format!("{path}.key: must not be empty")) } else { Ok(()) }
        };
        let check_scalar = |value: &Value, path: &str| match value {
            Value::Float(_) => {
                Err(format!("{path}: float values cannot be matched exactly; use a range filter"))
            }
            _ => Ok(()),
        };
        match self {
            Filter::Equals { key, value } => {
                check_key(key, &format!("{path}.equals"))?;
                check_scalar(value, &format!("{path}.equals.value"))
            }
            Filter::Range { key, gte, lte } => {
                let path = format!("{path}.range");
                check_key(key, &path)?;
                for (name, bound) in [("gte", gte), ("lte", lte)] {
                    if bound.is_some_and(|x| !x.is_finite()) {
                        return Err(format!("{path}.{name}: must be a finite number"));
                    }
                }
                match (gte, lte) {
                    (None, None) => Err(format!("{path}: needs gte, lte or both")),
                    (Some(low), Some(high)) if low > high => {
                        Err(format!("{path}: gte {low} is greater than lte {high}"))
                    }
                    _ => Ok(()),
                }
            }
            Filter::AnyOf { key, values } => {
                let path = format!("{path}.any_of");
                check_key(key, &path)?;
                if values.is_empty() {
                    return Err(format!("{path}.values: must not be empty"));
                }
                values
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, v)| check_scalar(v, &format!("{path}.values[{i}]")))
            }
            Filter::And(clauses) => {
                if clauses.is_empty() {
                    return Err(format!("{path}.and.clauses: must not be empty"));
                }
                clauses.iter().enumerate().try_for_each(|(i, clause)| {
                    clause.check_at(&format!("{path}.and.clauses[{i}]"), depth + 1, max_depth)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, Value)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn equality_is_typed_but_numbers_compare_by_value() {
        let m = meta(&[("year", Value::Int(2020)), ("lang", Value::String("en".into()))]);
        let eq = |k: &str, v: Value| Filter::Equals { key: k.into(), value: v }.matches(&m);
        assert!(eq("year", Value::Int(2020)));
        assert!(!eq("year", Value::Int(2021)));
        assert!(!eq("year", Value::String("2020".into())));
        assert!(eq("lang", Value::String("en".into())));
        assert!(!eq("missing", Value::String("en".into())));
        let float_meta = meta(&[("score", Value::Float(3.0))]);
        let three = Filter::Equals { key: "score".into(), value: Value::Int(3) };
        assert!(three.matches(&float_meta));
    }

    #[test]
    fn range_any_of_and_conjunction() {
        let m = meta(&[
            ("year", Value::Int(2020)),
            ("score", Value::Float(0.5)),
            ("ok", Value::Bool(true)),
        ]);
        let range = |gte, lte| Filter::Range { key: "year".into(), gte, lte };
        assert!(range(Some(2020.0), Some(2020.0)).matches(&m));
        assert!(!range(None, Some(2019.5)).matches(&m));
        assert!(range(Some(2019.5), None).matches(&m));
        let any =
            Filter::AnyOf { key: "ok".into(), values: vec![Value::Bool(false), Value::Bool(true)] };
        assert!(any.matches(&m));
        let both = Filter::And(vec![any.clone(), range(Some(2021.0), None)]);
        assert!(!both.matches(&m));
        let on_string = Filter::Range { key: "ok".into(), gte: Some(0.0), lte: None };
        assert!(!on_string.matches(&m));
    }

    #[test]
    fn check_names_the_bad_clause() {
        let bad = Filter::And(vec![
            Filter::Equals { key: "a".into(), value: Value::Int(1) },
            Filter::Range { key: "b".into(), gte: Some(5.0), lte: Some(3.0) },
        ]);
        assert_eq!(
            bad.check(8),
            Err("filter.and.clauses[1].range: gte 5 is greater than lte 3".into())
        );
        let float_eq = Filter::Equals { key: "x".into(), value: Value::Float(1.5) };
        assert_eq!(
            float_eq.check(8),
            Err("filter.equals.value: float values cannot be matched exactly; use a range filter"
                .into())
        );
        let mut deep = Filter::Equals { key: "a".into(), value: Value::Int(1) };
        for _ in 0..3 {
            deep = Filter::And(vec![deep]);
        }
        assert!(deep.check(4).is_ok());
        assert_eq!(
            deep.check(3),
            Err("filter.and.clauses[0].and.clauses[0].and.clauses[0]: filter nesting exceeds the limit of 3 levels".into())
        );
    }
}

//! The rules for the names and versions the API takes, each written once. A rule's type parses a
//! value (with the message a client sees when it does not) and gives the OpenAPI schema of the
//! fields it governs, from the same constants; the server checks with the one, the document
//! shows the other, so the two cannot drift.
//!
//! - [`Name`]: device ids, models, regions, group names, label keys, token and user names.
//! - [`Version`]: a firmware version, `major.minor.patch`.
//! - [`Label`]: a `key=value` label selector.

use std::fmt;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};

/// The longest name, in characters.
pub const NAME_MAX_CHARS: usize = 128;

/// The longest label value, in bytes.
pub const LABEL_VALUE_MAX_BYTES: usize = 256;

/// The characters a name may hold beside ASCII letters and digits.
const NAME_PUNCTUATION: &str = "-_.:";

/// A value that breaks its field's rule; the message names the field and says what was expected
/// and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A name: 1 to [`NAME_MAX_CHARS`] characters of ASCII letters, digits and `-_.:`, so it reads
/// the same in URLs, logs and filters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// `value` as the name of `field`.
    pub fn parse(field: &str, value: &str) -> Result<Name, Refused> {
        let ok = !value.is_empty()
            && value.chars().count() <= NAME_MAX_CHARS
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c));
        if ok {
            Ok(Name(value.to_string()))
        } else {
            Err(Refused(format!(
                "`{field}` must be 1 to {NAME_MAX_CHARS} letters, digits, `-`, `_`, `.` or `:`, found {value:?}"
            )))
        }
    }

    /// `value`, empty or a name of `field`.
    pub fn parse_optional(field: &str, value: &str) -> Result<Option<Name>, Refused> {
        if value.is_empty() {
            return Ok(None);
        }
        Name::parse(field, value).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The regular expression of a name, anchored, without the anchors.
    fn expression() -> String {
        format!("[A-Za-z0-9._:-]{{1,{NAME_MAX_CHARS}}}")
    }

    /// The schema of a name field.
    pub fn schema() -> Schema {
        string(format!("^{}$", Name::expression())).into()
    }

    /// The schema of a field that is a name or empty.
    pub fn optional_schema() -> Schema {
        string(format!("^$|^{}$", Name::expression())).into()
    }

    /// The schema of a list of names.
    pub fn list_schema() -> Schema {
        ArrayBuilder::new()
            .items(string(format!("^{}$", Name::expression())))
            .build()
            .into()
    }

    /// The schema of labels: name keys, values of at most [`LABEL_VALUE_MAX_BYTES`] (a byte
    /// limit a schema can only bound in characters, which is at least as many).
    pub fn labels_schema() -> Schema {
        let value = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(LABEL_VALUE_MAX_BYTES))
            .build();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(Name::schema()))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
            .build()
            .into()
    }

    /// Checks a label's value: at most [`LABEL_VALUE_MAX_BYTES`].
    pub fn check_label_value(key: &str, value: &str) -> Result<(), Refused> {
        if value.len() > LABEL_VALUE_MAX_BYTES {
            return Err(Refused(format!(
                "label `{key}` has a value of {} bytes, the limit is {LABEL_VALUE_MAX_BYTES}",
                value.len()
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A firmware version: `major.minor.patch`, numbers without leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// `value` as the version of `field`.
    pub fn parse(field: &str, value: &str) -> Result<Version, Refused> {
        let refused = || {
            Refused(format!(
                "`{field}` must be semver such as 1.2.0 (major.minor.patch, no pre-release), found {value:?}"
            ))
        };
        let mut parts = value.split('.');
        let mut number = || -> Result<u64, Refused> {
            let part = parts.next().ok_or_else(refused)?;
            let leading_zero = part.len() > 1 && part.starts_with('0');
            if part.is_empty() || leading_zero || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refused());
            }
            part.parse().map_err(|_| refused())
        };
        let version = Version {
            major: number()?,
            minor: number()?,
            patch: number()?,
        };
        if parts.next().is_some() {
            return Err(refused());
        }
        Ok(version)
    }

    /// `value`, empty (unknown) or a version of `field`.
    pub fn parse_optional(field: &str, value: &str) -> Result<Option<Version>, Refused> {
        if value.is_empty() {
            return Ok(None);
        }
        Version::parse(field, value).map(Some)
    }

    fn expression() -> &'static str {
        r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    }

    /// The schema of a version field.
    pub fn schema() -> Schema {
        string(format!("^{}$", Version::expression())).into()
    }

    /// The schema of a field that is a version or empty.
    pub fn optional_schema() -> Schema {
        string(format!("^$|^{}$", Version::expression())).into()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A label selector, `key=value`: a name, `=`, and any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: Name,
    pub value: String,
}

impl Label {
    /// `value` as the label selector of `field`.
    pub fn parse(field: &str, value: &str) -> Result<Label, Refused> {
        let Some((key, v)) = value.split_once('=') else {
            return Err(Refused(format!(
                "`{field}` must be `key=value`, found {value:?}"
            )));
        };
        let key = Name::parse(field, key)?;
        Name::check_label_value(key.as_str(), v)?;
        Ok(Label {
            key,
            value: v.to_string(),
        })
    }

    /// The schema of a label selector field.
    pub fn schema() -> Schema {
        string(format!("^{}=.*$", Name::expression())).into()
    }
}

/// `text` cut to at most `max_bytes` bytes at a character boundary, ending in `…` when cut:
/// how a text the server keeps from a client or a plugin is bounded where refusing it would
/// lose what came with it.
pub fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mark = '…';
    let mut end = max_bytes.saturating_sub(mark.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &text[..end])
}

/// A string schema with `pattern`.
fn string(pattern: String) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern of `schema`, as the document carries it.
    fn pattern(schema: Schema) -> String {
        let value = serde_json::to_value(schema).unwrap();
        value["pattern"].as_str().unwrap().to_string()
    }

    /// Whether `value` matches `pattern`, for the two shapes the patterns here take: a character
    /// class with a length, or the version's three numbers.
    fn matches(pattern: &str, value: &str) -> bool {
        if pattern.contains("[A-Za-z0-9._:-]") {
            let max: usize = pattern
                .split('{')
                .nth(1)
                .and_then(|b| b.split('}').next())
                .and_then(|b| b.split(',').nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap();
            let empty_too = pattern.starts_with("^$|");
            (empty_too && value.is_empty())
                || (!value.is_empty()
                    && value.chars().count() <= max
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)))
        } else {
            Version::parse("v", value).is_ok() || (pattern.starts_with("^$|") && value.is_empty())
        }
    }

    #[test]
    fn a_name_parses_exactly_when_its_schema_admits_it() {
        let long = "a".repeat(NAME_MAX_CHARS);
        let too_long = "a".repeat(NAME_MAX_CHARS + 1);
        let p = pattern(Name::schema());
        for value in [
            "pump-7",
            "eu-west:1",
            "a.b_c",
            &long,
            "",
            "with space",
            "é",
            &too_long,
        ] {
            assert_eq!(
                Name::parse("deviceId", value).is_ok(),
                matches(&p, value),
                "{value:?} against {p}"
            );
        }
        let err = Name::parse("deviceId", "a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`deviceId` must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`, found \"a b\""
        );
        assert_eq!(Name::parse_optional("region", "").unwrap(), None);
        assert!(matches(&pattern(Name::optional_schema()), ""));
    }

    #[test]
    fn a_version_parses_exactly_when_its_schema_admits_it() {
        for value in [
            "1.2.0", "0.0.0", "10.20.30", "01.2.3", "1.2", "1.2.3.4", "1.2.x", "", "v1.2.3",
        ] {
            let parsed = Version::parse("version", value);
            assert_eq!(
                parsed.is_ok(),
                matches(&pattern(Version::schema()), value),
                "{value:?}"
            );
            if let Ok(v) = parsed {
                assert_eq!(v.to_string(), value);
            }
        }
        assert!(
            Version::parse("version", "1.2.3").unwrap() < Version::parse("v", "1.10.0").unwrap()
        );
    }

    #[test]
    fn a_label_is_a_name_then_any_value() {
        let l = Label::parse("label", "site=lyon=2").unwrap();
        assert_eq!((l.key.as_str(), l.value.as_str()), ("site", "lyon=2"));
        assert!(Label::parse("label", "site").is_err());
        assert!(Label::parse("label", "bad key=x").is_err());
        let p = pattern(Label::schema());
        assert!(
            p.starts_with("^[A-Za-z0-9._:-]{1,128}=") && p.ends_with(".*$"),
            "{p}"
        );
    }
}

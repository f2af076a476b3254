//! Reading and checking the file: one pass over its TOML, with spans for the errors.

use std::ops::Range;
use std::path::Path;

use evolution_pool::{MAX_DEPLOYMENTS, Strategy};
use evolution_token::Credentials;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigFileError, Details};
use super::{MAX_FILE_BYTES, PoolConfig};
use crate::deployment::Deployment;

/// The keys of a `[[deployment]]`, in the order the documentation gives them.
const FIELDS: [&str; 11] = [
    "name",
    "key_id",
    "secret_env",
    "secret",
    "api_key_env",
    "api_key",
    "base_url",
    "model",
    "rpm",
    "tpm",
    "weight",
];

/// The keys of the file's top level.
const TOP_LEVEL: [&str; 3] = ["strategy", "deployment", "local_fraction"];

/// The file's text and, on Unix, its permission bits.
pub(super) fn read(path: &Path) -> std::result::Result<(String, Option<u32>), ConfigFileError> {
    use std::io::Read;

    let unreadable = |error: std::io::Error| {
        ConfigFileError::new(
            path,
            format!(
                "cannot read it ({error}): check the path and that this user may read the file"
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // The bits of the file read, not of whatever the path names a moment later.
    let metadata = file.metadata().map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ConfigFileError::new(
            path,
            "larger than 1 MiB: is it the pool's TOML file?",
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigFileError::new(path, "not UTF-8 text: is it the pool's TOML file?"))?;
    #[cfg(unix)]
    let mode = Some(std::os::unix::fs::PermissionsExt::mode(
        &metadata.permissions(),
    ));
    #[cfg(not(unix))]
    let mode = {
        drop(metadata);
        None
    };
    Ok((text, mode))
}

type Value<'i> = Spanned<DeValue<'i>>;

/// Which deployment an error is in: its position from 1 and, once read, its name.
#[derive(Clone, Copy)]
struct In<'n> {
    position: usize,
    name: Option<&'n str>,
}

/// The values of one `[[deployment]]`, in the order of [`FIELDS`].
struct Fields<'t, 'i>([Option<&'t Value<'i>>; FIELDS.len()]);

impl<'t, 'i> Fields<'t, 'i> {
    fn get(&self, name: &str) -> Option<&'t Value<'i>> {
        let index = FIELDS.iter().position(|field| *field == name)?;
        self.0[index]
    }

    fn span(&self, name: &str) -> Option<Range<usize>> {
        self.get(name).map(Spanned::span)
    }
}

/// How a deployment gives its key, before it is checked.
struct Key<'v> {
    key_id: Option<&'v str>,
    secret_env: Option<&'v str>,
    secret: Option<&'v str>,
    api_key_env: Option<&'v str>,
    api_key: Option<&'v str>,
}

/// A secret, by the field giving it: the name of a variable, or the secret itself.
#[derive(Clone, Copy)]
enum Secret<'v> {
    Variable(&'static str, &'v str),
    Inline(&'static str, &'v str),
}

impl Secret<'_> {
    fn field(self) -> &'static str {
        match self {
            Self::Variable(field, _) | Self::Inline(field, _) => field,
        }
    }
}

pub(super) struct Parser<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    /// The file's permission bits, where there are such.
    pub(super) mode: Option<u32>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    pub(super) fn parse(&self) -> std::result::Result<PoolConfig, ConfigFileError> {
        let document = DeTable::parse(self.text).map_err(|error| {
            self.error(
                None,
                None,
                error.span(),
                format!("not valid TOML: {}", error.message()),
            )
        })?;
        let mut strategy = None;
        let mut local_fraction = None;
        let mut deployments = None;
        let mut ignored_keys = Vec::new();
        for (key, value) in document.get_ref() {
            match key.get_ref().as_ref() {
                "strategy" => strategy = Some(self.strategy(value)?),
                "local_fraction" => local_fraction = Some(self.local_fraction(value)?),
                "deployment" => deployments = Some(value),
                other => match near(other, &TOP_LEVEL) {
                    Some(known) => {
                        return Err(self.error(
                            None,
                            Some(other),
                            Some(key.span()),
                            format!("unknown key: did you mean `{known}`?"),
                        ));
                    }
                    None => ignored_keys.push(other.to_owned()),
                },
            }
        }
        Ok(PoolConfig {
            path: self.path.to_owned(),
            strategy,
            local_fraction,
            deployments: self.deployments(deployments)?,
            ignored_keys,
        })
    }

    fn strategy(&self, value: &Value<'_>) -> std::result::Result<Strategy, ConfigFileError> {
        let at = |message: String| self.error(None, Some("strategy"), Some(value.span()), message);
        match value.get_ref() {
            DeValue::String(name) => name.parse().map_err(|unknown| at(format!("{unknown}"))),
            other => Err(at(format!(
                "must be a string (in quotes), not {}: use ordered, round_robin, weighted or least_loaded",
                article(other.type_str())
            ))),
        }
    }

    /// The share of each rate limit a replica keeps while Redis is down: above 0, at most 1.
    fn local_fraction(&self, value: &Value<'_>) -> std::result::Result<f64, ConfigFileError> {
        let at =
            |message: String| self.error(None, Some("local_fraction"), Some(value.span()), message);
        let fraction = match value.get_ref() {
            DeValue::Float(number) => number.as_str().parse::<f64>().ok(),
            DeValue::Integer(number) => number.as_str().parse::<f64>().ok(),
            other => {
                return Err(at(format!(
                    "must be a number, not {}: the share of each limit a replica keeps while Redis is unreachable, e.g. 0.5",
                    article(other.type_str())
                )));
            }
        };
        match fraction {
            Some(fraction) if fraction > 0.0 && fraction <= 1.0 => Ok(fraction),
            _ => Err(at(
                "must be above 0 and at most 1: the share of each limit a replica keeps while Redis is unreachable, e.g. 0.5".into(),
            )),
        }
    }

    fn deployments(
        &self,
        value: Option<&Value<'_>>,
    ) -> std::result::Result<Vec<Deployment>, ConfigFileError> {
        let none =
            "no deployment: add a `[[deployment]]` section with a name and a key for each key";
        let Some(value) = value else {
            return Err(self.error(None, Some("deployment"), None, none));
        };
        let items = match value.get_ref() {
            DeValue::Array(items) if items.is_empty() => {
                return Err(self.error(None, Some("deployment"), Some(value.span()), none));
            }
            DeValue::Array(items) => items,
            other => {
                return Err(self.error(
                    None,
                    Some("deployment"),
                    Some(value.span()),
                    format!(
                        "must be an array of tables, not a {}: write `[[deployment]]`, with two brackets, above each deployment",
                        other.type_str()
                    ),
                ));
            }
        };
        if items.len() > MAX_DEPLOYMENTS {
            return Err(self.error(
                Some(In {
                    position: MAX_DEPLOYMENTS + 1,
                    name: None,
                }),
                None,
                Some(items[MAX_DEPLOYMENTS].span()),
                format!(
                    "{} deployments, more than the {MAX_DEPLOYMENTS} a pool holds: split them between clients",
                    items.len()
                ),
            ));
        }
        let mut deployments: Vec<Deployment> = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let deployment = self.deployment(index + 1, item, &deployments)?;
            deployments.push(deployment);
        }
        Ok(deployments)
    }

    fn deployment(
        &self,
        position: usize,
        item: &Value<'_>,
        earlier: &[Deployment],
    ) -> std::result::Result<Deployment, ConfigFileError> {
        let unnamed = In {
            position,
            name: None,
        };
        let DeValue::Table(table) = item.get_ref() else {
            return Err(self.error(
                Some(unnamed),
                None,
                Some(item.span()),
                format!(
                    "must be a table, not a {}: write each deployment as a `[[deployment]]` section",
                    item.get_ref().type_str()
                ),
            ));
        };
        // One pass sorts the keys; an unknown one is reported once the name is known.
        let mut fields = Fields([None; FIELDS.len()]);
        let mut unknown = None;
        for (key, value) in table {
            match FIELDS.iter().position(|field| *field == key.get_ref()) {
                Some(index) => fields.0[index] = Some(value),
                None => unknown = unknown.or(Some(key)),
            }
        }

        let name = match fields.get("name") {
            Some(value) => self.string(unnamed, "name", value)?,
            None => {
                return Err(self.error(
                    Some(unnamed),
                    Some("name"),
                    Some(item.span()),
                    "missing: give each deployment a name, its label in metrics and logs",
                ));
            }
        };
        if let Some(first) = earlier.iter().position(|d| d.name == name) {
            return Err(self.error(
                Some(unnamed),
                Some("name"),
                fields.span("name"),
                format!(
                    "`{name}` is also the name of deployment #{}: names label metrics and logs, so each must be different",
                    first + 1
                ),
            ));
        }
        let at = In {
            position,
            name: Some(name),
        };
        if let Some(key) = unknown {
            let hint = match near(key.get_ref(), &FIELDS) {
                Some(known) => format!("did you mean `{known}`?"),
                None => format!("the keys of a deployment are {}", FIELDS.join(", ")),
            };
            return Err(self.error(
                Some(at),
                Some(key.get_ref()),
                Some(key.span()),
                format!("unknown key: {hint}"),
            ));
        }

        // Every value's type and range before the key, whose variables are the
        // environment's mistakes rather than the file's.
        let text = |name: &'static str| {
            fields
                .get(name)
                .map(|value| self.string(at, name, value))
                .transpose()
        };
        let key = Key {
            key_id: text("key_id")?,
            secret_env: text("secret_env")?,
            secret: text("secret")?,
            api_key_env: text("api_key_env")?,
            api_key: text("api_key")?,
        };
        let base_url = text("base_url")?;
        let model = text("model")?;
        let rpm = self.count(at, "rpm", fields.get("rpm"), "leave it out for no limit")?;
        let tpm = self.count(at, "tpm", fields.get("tpm"), "leave it out for no limit")?;
        let weight = self.count(at, "weight", fields.get("weight"), "leave it out for 1")?;
        if let Some(base_url) = base_url {
            self.check_url(at, fields.span("base_url"), base_url)?;
        }

        let mut deployment =
            Deployment::with_credentials(name, self.credentials(at, item, &fields, key)?);
        if let Some(base_url) = base_url {
            deployment = deployment.base_url(base_url);
        }
        if let Some(model) = model {
            deployment = deployment.model(model);
        }
        if let Some(rpm) = rpm {
            deployment = deployment.rpm(rpm);
        }
        if let Some(tpm) = tpm {
            deployment = deployment.tpm(tpm);
        }
        if let Some(weight) = weight {
            deployment = deployment.weight(weight);
        }
        Ok(deployment)
    }

    /// The deployment's key: an IAM access key (`key_id` and `secret_env` or `secret`) or an
    /// API key (`api_key_env` or `api_key`), and nothing else.
    fn credentials(
        &self,
        at: In<'_>,
        item: &Value<'_>,
        fields: &Fields<'_, '_>,
        key: Key<'_>,
    ) -> std::result::Result<Credentials, ConfigFileError> {
        let both = |one: &str, other: &str, advice: &str| {
            self.error(
                Some(at),
                Some(other),
                fields.span(other),
                format!("both `{one}` and `{other}` are set: {advice}"),
            )
        };
        let missing = |name: &str, message: &str| {
            self.error(Some(at), Some(name), Some(item.span()), message)
        };
        let secret = match (key.secret_env, key.secret) {
            (Some(_), Some(_)) => {
                return Err(both(
                    "secret_env",
                    "secret",
                    "keep one, preferably `secret_env`",
                ));
            }
            (Some(variable), None) => Some(Secret::Variable("secret_env", variable)),
            (None, inline) => inline.map(|inline| Secret::Inline("secret", inline)),
        };
        let api_key = match (key.api_key_env, key.api_key) {
            (Some(_), Some(_)) => {
                return Err(both(
                    "api_key_env",
                    "api_key",
                    "keep one, preferably `api_key_env`",
                ));
            }
            (Some(variable), None) => Some(Secret::Variable("api_key_env", variable)),
            (None, inline) => inline.map(|inline| Secret::Inline("api_key", inline)),
        };
        match (key.key_id, secret, api_key) {
            (Some(key_id), Some(secret), None) => {
                Ok(Credentials::new(key_id, self.secret(at, fields, secret)?))
            }
            (None, None, Some(api_key)) => {
                Ok(Credentials::api_key(self.secret(at, fields, api_key)?))
            }
            (None, None, None) => Err(missing(
                "key_id",
                "missing: give the deployment a key, `key_id` with `secret_env` (or `secret`) for an IAM access key, or `api_key_env` (or `api_key`) for an API key",
            )),
            (key_id, secret, Some(api_key)) => {
                let iam = match (key_id, secret) {
                    (Some(_), _) => "key_id",
                    (None, secret) => secret.map_or("secret_env", Secret::field),
                };
                Err(both(
                    iam,
                    api_key.field(),
                    "a deployment has one key: keep `key_id` with `secret_env` for an IAM access key, or `api_key_env` for an API key",
                ))
            }
            (None, Some(_), None) => Err(missing(
                "key_id",
                "missing: `secret_env` (or `secret`) needs `key_id`, the id of the access key",
            )),
            (Some(_), None, None) => Err(missing(
                "secret_env",
                "missing: `key_id` needs `secret_env` (the variable holding the secret) or `secret`",
            )),
        }
    }

    /// A secret: the value of the variable a `*_env` key names, or one written in the file,
    /// which is refused unless only the file's owner may read it.
    fn secret(
        &self,
        at: In<'_>,
        fields: &Fields<'_, '_>,
        secret: Secret<'_>,
    ) -> std::result::Result<String, ConfigFileError> {
        let field = secret.field();
        let error =
            |message: String| self.error(Some(at), Some(field), fields.span(field), message);
        let variable = match secret {
            Secret::Inline(_, inline) => {
                return match self.mode {
                    Some(mode) if mode & 0o077 != 0 => Err(error(format!(
                        "a secret written in a file that group or others may read (mode {:o}): run `chmod 600 {}`, or give the name of a variable holding it in `{field}_env`",
                        mode & 0o777,
                        self.path.display()
                    ))),
                    _ => Ok(inline.to_owned()),
                };
            }
            Secret::Variable(_, variable) => variable,
        };
        // Anything but a variable's name is not quoted: it may be the secret itself, put
        // here by mistake.
        let is_name = !variable.starts_with(|c: char| c.is_ascii_digit())
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            return Err(error(
                "not a variable name (letters, digits and `_`): give the name of the environment variable that holds the secret".to_owned(),
            ));
        }
        match (self.env)(variable).map(|value| value.trim().to_owned()) {
            Some(value) if !value.is_empty() => Ok(value),
            Some(_) => Err(error(format!(
                "the variable {variable} is empty: set it to the secret"
            ))),
            None => Err(error(format!(
                "the variable {variable} is not set: set it to the secret, or name another variable"
            ))),
        }
    }

    /// A non-empty string, trimmed. Its value is never quoted: it may be a secret.
    fn string<'v>(
        &self,
        at: In<'_>,
        name: &str,
        value: &'v Value<'_>,
    ) -> std::result::Result<&'v str, ConfigFileError> {
        let error = |message: String| self.error(Some(at), Some(name), Some(value.span()), message);
        match value.get_ref() {
            DeValue::String(text) if !text.trim().is_empty() => Ok(text.trim()),
            DeValue::String(_) => Err(error("must not be empty".to_owned())),
            other => Err(error(format!(
                "must be a string (in quotes), not {}",
                article(other.type_str())
            ))),
        }
    }

    /// A whole number from 1 to `u32::MAX`, if given.
    fn count(
        &self,
        at: In<'_>,
        name: &str,
        value: Option<&Value<'_>>,
        hint: &str,
    ) -> std::result::Result<Option<u32>, ConfigFileError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let range = format!("must be a whole number from 1 to {}", u32::MAX);
        let error = |message: String| self.error(Some(at), Some(name), Some(value.span()), message);
        match value.get_ref() {
            DeValue::Integer(integer) => {
                match i128::from_str_radix(integer.as_str(), integer.radix()) {
                    Ok(number) => match u32::try_from(number) {
                        Ok(number) if number > 0 => Ok(Some(number)),
                        _ => Err(error(format!("{range}, not {number}: {hint}"))),
                    },
                    Err(_) => Err(error(format!("{range}: {hint}"))),
                }
            }
            other => Err(error(format!(
                "{range}, not {}: {hint}",
                article(other.type_str())
            ))),
        }
    }

    /// An http(s) URL. Whether plain http is allowed is the builder's to say.
    fn check_url(
        &self,
        at: In<'_>,
        span: Option<Range<usize>>,
        url: &str,
    ) -> std::result::Result<(), ConfigFileError> {
        // The URL is not quoted back: it may hold a user and password.
        let error = |message: String| self.error(Some(at), Some("base_url"), span.clone(), message);
        match url::Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(()),
            Ok(url) => Err(error(format!(
                "the scheme is `{}`: use an https:// URL ending in /v1",
                url.scheme()
            ))),
            Err(problem) => Err(error(format!(
                "not a URL ({problem}): use an https:// URL ending in /v1"
            ))),
        }
    }

    fn error(
        &self,
        at: Option<In<'_>>,
        field: Option<&str>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigFileError {
        ConfigFileError(Box::new(Details {
            path: self.path.to_owned(),
            position: span.map(|span| line_and_column(self.text, span.start)),
            deployment: at.map(|at| (at.position, at.name.map(str::to_owned))),
            field: field.map(str::to_owned),
            message: message.into(),
        }))
    }
}

/// Line and column (in characters), from 1, of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// The known key that `key` is probably a misspelling of.
fn near<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance > 0 && *distance <= candidate.len() / 4 + 1)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, over characters; keys are short.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a != *b);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> std::result::Result<PoolConfig, ConfigFileError> {
        let env = |name: &str| {
            env.iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| (*value).to_owned())
        };
        Parser {
            path: Path::new("pool.toml"),
            text,
            mode: Some(0o100600),
            env: &env,
        }
        .parse()
    }

    #[test]
    fn deployments_keep_every_value_of_the_file() {
        use secrecy::ExposeSecret;
        use std::num::NonZeroU32;

        let text = r#"
[[deployment]]
name = " main "
key_id = "key-1"
secret_env = "MAIN_SECRET"
base_url = "https://other.example/v1"
model = "other-model"
rpm = 600
tpm = 100_000
weight = 0x3

[[deployment]]
name = "spare"
api_key = "inline-api-key"
"#;
        let config = parse(text, &[("MAIN_SECRET", " secret-1\n")]).unwrap();
        assert_eq!(config.strategy(), None);
        let [main, spare] = config.deployments() else {
            panic!("{config:?}")
        };
        assert_eq!(main.name, "main");
        assert_eq!(main.credentials.key_id(), "key-1");
        assert_eq!(main.credentials.secret().expose_secret(), "secret-1");
        assert_eq!(main.base_url.as_deref(), Some("https://other.example/v1"));
        assert_eq!(main.model.as_deref(), Some("other-model"));
        assert_eq!(main.rpm, NonZeroU32::new(600));
        assert_eq!(main.tpm, NonZeroU32::new(100_000));
        assert_eq!(main.weight, 3);
        assert!(spare.credentials.is_api_key());
        assert_eq!(spare.credentials.secret().expose_secret(), "inline-api-key");
        assert_eq!(
            (
                &spare.base_url,
                &spare.model,
                spare.rpm,
                spare.tpm,
                spare.weight
            ),
            (&None, &None, None, None, 1)
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Any text, however broken, gives a configuration or an error whose position is in
        /// the text, and never shows the secret of a variable.
        #[test]
        fn any_text_gives_a_configuration_or_an_error_in_it(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("[[deployment]]".to_owned()),
                    Just("[deployment]".to_owned()),
                    Just("name = \"main\"".to_owned()),
                    Just("key_id = \"k\"".to_owned()),
                    Just("secret_env = \"MAIN_SECRET\"".to_owned()),
                    Just("api_key_env = \"MAIN_SECRET\"".to_owned()),
                    Just("secret = \"inline\"".to_owned()),
                    Just("strategy = \"weighted\"".to_owned()),
                    "(rpm|tpm|weight) = -?[0-9]{1,12}(\\.5)?",
                    "[a-z_]{1,11} = (\"[a-z/:.]{0,12}\"|[0-9]{1,3}|true|\\[\\])",
                    "[\\[\\]\"= a-z]{0,8}",
                ],
                0..24,
            )
        ) {
            let text = lines.join("\n");
            match parse(&text, &[("MAIN_SECRET", "secret-of-the-variable")]) {
                Ok(config) => {
                    prop_assert!(!config.deployments().is_empty());
                    let debug = format!("{config:?}");
                    prop_assert!(!debug.contains("secret-of-the-variable"));
                }
                Err(error) => {
                    let lines = text.split('\n').count();
                    prop_assert!(error.line().is_none_or(|line| line <= lines), "{error}");
                    prop_assert!(!error.to_string().contains("secret-of-the-variable"));
                }
            }
        }
    }

    #[test]
    fn near_misses_are_found_and_other_keys_are_not() {
        assert_eq!(near("secret_evn", &FIELDS), Some("secret_env"));
        assert_eq!(near("deployments", &TOP_LEVEL), Some("deployment"));
        assert_eq!(near("stratgy", &TOP_LEVEL), Some("strategy"));
        assert_eq!(near("gateway", &TOP_LEVEL), None);
        assert_eq!(near("rps", &FIELDS), Some("rpm"));
        assert_eq!(near("region", &FIELDS), None);
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nключ = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, text.find('=').unwrap()), (1, 3));
        let second = text.rfind('=').unwrap();
        assert_eq!(line_and_column(text, second), (2, 6));
    }
}

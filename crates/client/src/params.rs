//! The generation parameters: the defaults of every request body, and the ranges they and
//! each request's overrides are checked against.

use crate::{Error, Result};

/// `max_tokens` unless set (the reference SDK's default).
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// `temperature` unless set.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// `top_p` unless set.
pub const DEFAULT_TOP_P: f64 = 1.0;
/// `frequency_penalty` and `presence_penalty` unless set.
pub const DEFAULT_PENALTY: f64 = 0.0;
/// `n` unless set.
pub const DEFAULT_N: u32 = 1;

/// The client's generation parameters (the request body defaults).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub(crate) model: String,
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f64,
    pub(crate) top_p: f64,
    pub(crate) frequency_penalty: f64,
    pub(crate) presence_penalty: f64,
    pub(crate) stop: Option<Vec<String>>,
    pub(crate) n: u32,
}

impl Default for Params {
    /// The reference SDK's defaults, and no model yet: the builder requires one.
    fn default() -> Self {
        Self {
            model: String::new(),
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            frequency_penalty: DEFAULT_PENALTY,
            presence_penalty: DEFAULT_PENALTY,
            stop: None,
            n: DEFAULT_N,
        }
    }
}

impl Params {
    /// Checks the client's defaults, once, when the client is built.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_generation(
            self.max_tokens,
            self.temperature,
            self.top_p,
            self.frequency_penalty,
            self.presence_penalty,
            self.n,
        )
    }
}

/// The ranges of the generation parameters, checked for the client's defaults and
/// for each request's overrides alike.
pub(crate) fn validate_generation(
    max_tokens: u32,
    temperature: f64,
    top_p: f64,
    frequency_penalty: f64,
    presence_penalty: f64,
    n: u32,
) -> Result<()> {
    fn range(field: &'static str, value: f64, min: f64, max: f64) -> Result<()> {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(Error::config(
                field,
                format!("{value} is out of range: it must be between {min} and {max}"),
            ))
        }
    }
    range("temperature", temperature, 0.0, 2.0)?;
    range("top_p", top_p, 0.0, 1.0)?;
    range("frequency_penalty", frequency_penalty, -2.0, 2.0)?;
    range("presence_penalty", presence_penalty, -2.0, 2.0)?;
    if max_tokens == 0 {
        return Err(Error::config("max_tokens", "must be at least 1"));
    }
    if n == 0 {
        return Err(Error::config("n", "must be at least 1"));
    }
    Ok(())
}

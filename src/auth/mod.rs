//! Registry authentication: reading challenges and keeping tokens.
//!
//! This module decides which `Authorization` header a request carries. Its only
//! I/O is reading credential files and running credential helpers; the token
//! request itself goes through `registry`.

mod base64;
mod challenge;
mod credentials;
mod helper;
mod keys;
mod session;
mod token;

pub(crate) use base64::base64;
pub(crate) use challenge::{Challenge, parse_challenges};
pub use credentials::Credentials;
#[cfg(any(feature = "__fuzz", test))]
pub(crate) use credentials::parse_credential_file;
pub(crate) use credentials::{CredentialSources, Lookup};
pub(crate) use helper::HelperAnswers;
#[cfg(any(feature = "__fuzz", test))]
pub(crate) use helper::{Answer, Ended, judge};
pub(crate) use session::{AuthOutcome, Next, Realm, Session};
pub(crate) use token::{Token, TokenStore, parse_token_answer};

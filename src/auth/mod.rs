//! Registry authentication: reading challenges and keeping tokens.
//!
//! This module decides which `Authorization` header a request carries; it does no
//! network I/O of its own (the token request itself goes through `registry`).

mod challenge;
mod token;

pub(crate) use challenge::{Challenge, parse_challenges};
pub(crate) use token::{Token, TokenResponse, TokenStore};

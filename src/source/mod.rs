//! Where artifacts come from besides the cache and the registry itself: OCI
//! image layouts on disk (read, and written by `vendor`) and registry mirrors,
//! tried in the order DESIGN.md's pull path gives (cache, layouts, mirrors, the
//! registry).

pub(crate) mod layout;
pub(crate) mod mirror;

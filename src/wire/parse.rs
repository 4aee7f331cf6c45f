//! The parser: link layer, IP, L4, in one pass over the frame.

use super::{LinkType, Parsed, WireError};

/// Parses one frame. Never panics, never allocates.
pub fn parse(_link: LinkType, _frame: &[u8]) -> Result<Parsed, WireError> {
    Err(WireError::TruncatedLink)
}

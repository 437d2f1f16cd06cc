//! What one call to a streaming decoder's `feed` produced.

/// The result of feeding a slice to [`crate::FrameDecoder::feed`] (and
/// [`crate::LineDecoder::feed`]), in the manner of postcard's
/// `CobsAccumulator::feed`: either the whole slice was taken in, or an item is
/// complete and the unused rest of the slice is handed back, to be fed next.
///
/// A typical loop over one read:
///
/// ```
/// # use proto_core::{FeedResult, FrameDecoder};
/// # let read: &[u8] = &[6, 0, 0, 6, 0];
/// # let mut decoder = FrameDecoder::new();
/// let mut input = read;
/// while let FeedResult::Complete { item, remaining } = decoder.feed(input) {
///     match item {
///         Ok(frame) => { /* act on the frame */ }
///         Err(error) => { /* the bad frame was skipped; go on */ }
///     }
///     input = remaining;
/// }
/// // Every byte of `read` is now in the decoder or behind it: read again.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedResult<'i, T> {
    /// Every byte of the input was taken in and nothing is complete yet: feed the
    /// next input.
    Consumed,
    /// An item (a frame or a line, or the error that rejected one) is complete.
    Complete {
        /// The item.
        item: T,
        /// The input after the item, not yet looked at; possibly empty.
        remaining: &'i [u8],
    },
}

impl<'i, T> FeedResult<'i, T> {
    /// The completed item, if any, dropping the rest of the input.
    pub fn item(self) -> Option<T> {
        match self {
            FeedResult::Consumed => None,
            FeedResult::Complete { item, .. } => Some(item),
        }
    }
}

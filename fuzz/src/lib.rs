//! Shared by the fuzz targets: how a fuzz input is cut into the chunks the decoders
//! are fed.
//!
//! A fuzz input is `k`, then `k & 7` chunk-size bytes, then the stream itself. The
//! stream is fed in chunks whose sizes cycle through the size bytes, a size of 0
//! meaning "all that is left"; with no size bytes it is fed whole. So a seed that is
//! `00` followed by a valid stream is that stream fed whole, and the fuzzer chooses
//! the chunking by mutating the first bytes.

/// A fuzz input split into its chunk sizes and its stream.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The chunk sizes, cycled; empty means the stream is fed whole.
    pub sizes: &'a [u8],
    /// The bytes fed to the decoder.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits raw fuzz data; short data gives an empty stream.
    pub fn parse(data: &'a [u8]) -> Self {
        let Some((&k, rest)) = data.split_first() else {
            return Self {
                sizes: &[],
                stream: &[],
            };
        };
        let k = usize::from(k & 7).min(rest.len());
        let (sizes, stream) = rest.split_at(k);
        Self { sizes, stream }
    }

    /// The chunks of the stream, in order: each `(offset, bytes)`.
    pub fn chunks(&self) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
        let stream = self.stream;
        let sizes = self.sizes;
        let mut at = 0;
        let mut i = 0;
        core::iter::from_fn(move || {
            if at >= stream.len() {
                return None;
            }
            let left = stream.len() - at;
            let size = match sizes.get(i % sizes.len().max(1)) {
                Some(&s) if s > 0 => usize::from(s).min(left),
                _ => left,
            };
            i += 1;
            let start = at;
            at += size;
            Some((start, &stream[start..at]))
        })
    }
}

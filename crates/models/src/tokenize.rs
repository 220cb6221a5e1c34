//! Tokenization with the checkpoint's `tokenizer.json`, with any padding or truncation baked
//! into that file switched off: Sieve truncates to the model's window itself (pairs cut the
//! passage, never the query) and pads each batch to its longest member.

use std::path::Path;

use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{ModelError, Result};

/// One model input: token ids and token type ids (0 for the query, 1 for the passage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids.
    pub type_ids: Vec<u32>,
}

impl Encoded {
    /// Tokens, special tokens included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens (never, once special tokens are added).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl From<&Encoding> for Encoded {
    fn from(encoding: &Encoding) -> Self {
        Encoded { ids: encoding.get_ids().to_vec(), type_ids: encoding.get_type_ids().to_vec() }
    }
}

/// A checkpoint's tokenizer, set up for single texts and for (query, passage) pairs.
pub struct TextTokenizer {
    model: String,
    /// Single texts, cut at the window.
    single: Tokenizer,
    /// Pairs, cutting only the passage.
    pair: Tokenizer,
    /// Pairs whose query alone overflows the window: both sides are cut, longest first.
    pair_long_query: Tokenizer,
    /// No truncation at all, for building passage windows (tokenizers cuts long inputs to
    /// the window before it applies a stride, so its own overflow cannot produce them).
    untruncated: Tokenizer,
    max_length: usize,
}

/// A copy of the tokenizer without padding, truncating as given (`None`: not at all).
fn configured(
    base: &Tokenizer,
    truncation: Option<(usize, TruncationStrategy)>,
) -> Result<Tokenizer> {
    let mut tokenizer = base.clone();
    tokenizer.with_padding(None);
    let params = truncation.map(|(max_length, strategy)| TruncationParams {
        direction: TruncationDirection::Right,
        max_length,
        strategy,
        stride: 0,
    });
    tokenizer
        .with_truncation(params)
        .map_err(|e| ModelError::Unsupported(format!("tokenizer truncation: {e}")))?;
    Ok(tokenizer)
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from a checkpoint folder.
    pub fn load(model: &str, dir: &Path, max_length: usize) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        let base = Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Unsupported(format!("{}: {e}", path.display())))?;
        Ok(TextTokenizer {
            model: model.to_string(),
            single: configured(&base, Some((max_length, TruncationStrategy::LongestFirst)))?,
            pair: configured(&base, Some((max_length, TruncationStrategy::OnlySecond)))?,
            pair_long_query: configured(
                &base,
                Some((max_length, TruncationStrategy::LongestFirst)),
            )?,
            untruncated: configured(&base, None)?,
            max_length,
        })
    }

    /// The window, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// A single text, cut at the window.
    pub fn encode_text(&self, text: &str) -> Result<Encoded> {
        let encoding = self
            .single
            .encode_fast(text, true)
            .map_err(|e| ModelError::inference(&self.model, "tokenizing", e))?;
        Ok(Encoded::from(&encoding))
    }

    /// A (query, passage) pair: `truncation='only_second'` semantics; a query too long to
    /// leave room for any passage is cut too, rather than failing.
    pub fn encode_pair(&self, query: &str, passage: &str) -> Result<Encoded> {
        match self.pair.encode_fast((query, passage), true) {
            Ok(encoding) => Ok(Encoded::from(&encoding)),
            Err(_) => {
                let encoding = self
                    .pair_long_query
                    .encode_fast((query, passage), true)
                    .map_err(|e| ModelError::inference(&self.model, "tokenizing", e))?;
                Ok(Encoded::from(&encoding))
            }
        }
    }

    /// A pair whose passage may overflow the window, as overlapping windows of the passage,
    /// each with the whole query; consecutive windows share 1/8 of the window. A query that
    /// leaves too little room gets the single truncated pair.
    pub fn encode_pair_windows(&self, query: &str, passage: &str) -> Result<Vec<Encoded>> {
        let tokenize = |text: &str| {
            self.untruncated
                .encode_fast(text, false)
                .map_err(|e| ModelError::inference(&self.model, "tokenizing", e))
        };
        let (query_tokens, mut passage_tokens) = (tokenize(query)?, tokenize(passage)?);
        let specials = self.untruncated.get_post_processor().map_or(0, |p| p.added_tokens(true));
        let stride = self.max_length / 8;
        let room = self.max_length.saturating_sub(query_tokens.len() + specials);
        if room <= stride || passage_tokens.len() <= room {
            return Ok(vec![self.encode_pair(query, passage)?]);
        }
        passage_tokens.truncate(room, stride, TruncationDirection::Right);
        let rest = passage_tokens.take_overflowing();
        std::iter::once(passage_tokens)
            .chain(rest)
            .map(|window| {
                let pair = self
                    .untruncated
                    .post_process(query_tokens.clone(), Some(window), true)
                    .map_err(|e| ModelError::inference(&self.model, "tokenizing", e))?;
                Ok(Encoded::from(&pair))
            })
            .collect()
    }
}
